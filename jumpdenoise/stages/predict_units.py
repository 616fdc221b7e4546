"""Running predict units: the shared set-up of a plate's units, and many units in one pipeline.

:func:`run_many` streams the fields of several units through one
:func:`~jumpdenoise.predict.engine.run_fields` pipeline and reports each unit as soon as
its last field is settled; :func:`jumpdenoise.stages.predict.run_one` is the one-unit case.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from jumpdenoise.errors import JumpDenoiseError, ModelError, PlateError
from jumpdenoise.stages.base import Unit
from jumpdenoise.stages.predict_setup import file_sha256, get_predictor, out_path, raw_path, read_predict_record
from jumpdenoise.stages.session import PAYLOADS_KEY, PlateSession

if TYPE_CHECKING:
    from jumpdenoise.config import JumpDenoiseConfig

log = logging.getLogger("jumpdenoise.predict")

__all__ = ["run_many"]


def _payload_bytes(payload: Any) -> int:
    return sum(getattr(v, "nbytes", 0) for v in payload.values()) if isinstance(payload, dict) else -1


class _PlateContext:
    """What the units of one plate share in a process: paths, channels, predictor, reader."""

    def __init__(self, config: JumpDenoiseConfig, session: PlateSession) -> None:
        from jumpdenoise.io.ngff import plate_info
        from jumpdenoise.io.ngff_markers import tracks_completion
        from jumpdenoise.predict.writers import PlateFieldWriter, resolve_io_threads, resolve_write_processes

        self.raw, self.out = raw_path(config), out_path(config)
        record = read_predict_record(self.out)
        self.channels, out_dtype = record["channels"], record["dtype"]
        self.predictor = get_predictor(config, session)
        model = self.predictor.model
        sha = file_sha256(model.checkpoint, session) if model.checkpoint else None
        if sha != record["fingerprint"]["model_sha256"]:
            raise ModelError(f"{model.checkpoint}: the model changed since {self.out} was prepared; "
                             "rerun with overwrite")
        raw_info = plate_info(self.raw)
        self.raw_tracked = raw_info.kind != "external" and tracks_completion(self.raw)
        self.pick = None if self.channels == raw_info.channels else self.channels
        self.mpx_per_field = len(self.channels) * raw_info.shape_yx[0] * raw_info.shape_yx[1] / 1e6
        self.writer = PlateFieldWriter(str(self.out), out_dtype, tuple(self.channels))
        ex = config.predict.experimental
        threads = resolve_io_threads(ex.io_threads)
        self.pipeline = {"prefetch": ex.prefetch, "readers": max(1, threads // 2), "writers": threads,
                         "write_processes": resolve_write_processes(ex.write_processes, self.predictor.device.type)}

    def check_first(self, pair: tuple[str, int], raw: np.ndarray, denoised: np.ndarray) -> None:
        """Refuse the first denoised field when implausible (:func:`~jumpdenoise.predict.pipeline.check_plausible`)."""
        from jumpdenoise.predict.pipeline import check_plausible

        model = self.predictor.model
        check_plausible(raw, denoised, self.channels, model.std,
                        f"model {model.checkpoint or model.source} on {self.raw} field {pair[0]}/{pair[1]}")

    def read(self, pair: tuple[str, int]) -> np.ndarray:
        """The raw field ``(well, field)``, the model's channels; only a field the raw plate
        marks complete (checked again here: units may run long after prepare)."""
        from jumpdenoise.io.ngff import field_key, is_done, read_field

        if self.raw_tracked and not is_done(self.raw, field_key(*pair)):
            raise PlateError(f"{self.raw}: field {pair[0]}/{pair[1]} is not marked complete (its conversion failed, "
                             "was redone or is running)")
        return read_field(self.raw, pair[0], pair[1], channels=self.pick, complete=self.raw_tracked)

    def todo(self, unit: Unit, done: set[str]) -> tuple[list[tuple[str, int]], int]:
        """The unit's fields not in ``done`` (marker keys), and how many are."""
        from jumpdenoise.io.ngff import field_key

        pairs = [(w, int(f)) for w, f in (item.split("/") for item in unit.items)]
        todo = [p for p in pairs if field_key(*p) not in done]
        return todo, len(pairs) - len(todo)


def _failure_error(unit: Unit, failures: list, n: int) -> JumpDenoiseError:
    from jumpdenoise.io.ngff import field_key

    lines = [f"{field_key(*f.key)} ({f.stage}): {type(f.error).__name__}: {f.error}" for f in failures]
    return JumpDenoiseError(f"{len(lines)} of {n} field(s) failed in unit {unit.key}:\n" + "\n".join(lines))


def run_many(config: JumpDenoiseConfig, units: list[Unit],
             on_outcome: Callable[[Unit, dict | None, BaseException | None], None], session: PlateSession) -> None:
    """Denoise several units through one pipeline, reporting each unit as soon as it is done.

    The pipeline is not drained between units: the next unit's fields are read while the
    previous unit's are written, so the device does not wait at unit boundaries (the
    in-process executor runs the units of a stage this way). Each field is marked done
    after its data, exactly as with :func:`run_one`.

    Parameters
    ----------
    config
        Root configuration.
    units
        Units of :func:`plan`, run in order.
    on_outcome
        ``on_outcome(unit, result, error)``, once per unit, in the caller's thread: the
        :func:`run_one` result dict, or ``None`` and the error (some of its fields failed;
        or the pipeline itself failed while the unit was in it: the units after it are then
        run in a new pipeline). In a session that keeps payloads, the result also holds
        the done-marker payloads of its fields (``payloads``: ``{field key: payload}``, within
        the session's memory budget), which finalize then need not read back.
    session
        The process's session: the predictor, the writer processes, the payload budget.
    """
    from jumpdenoise.io.ngff import done_keys, field_key
    from jumpdenoise.predict.engine import run_fields
    from jumpdenoise.predict.pipeline import ImplausibleOutput

    if not units:
        return
    ctx = _PlateContext(config, session)
    first_check: list = [ctx.check_first]  # the first field denoised in this call is checked
    remaining = list(units)
    while remaining:
        owner: dict[tuple[str, int], int] = {}
        left: dict[int, int] = {}
        failures: dict[int, list] = {}
        skipped: dict[int, int] = {}
        stored: dict[int, list[str]] = {}  # field keys written and marked done, per unit
        payloads: dict[int, dict[str, dict]] = {}  # their marker payloads, when the session keeps them
        keys: list[tuple[str, int]] = []
        reported: set[int] = set()
        clock = {"last": time.perf_counter()}

        def report(i: int) -> None:
            unit = remaining[i]
            reported.add(i)
            now = time.perf_counter()
            seconds, clock["last"] = now - clock["last"], now
            log.info("unit %s: %d field(s) written, %d skipped, %d failed (%.2f s since the previous unit)",
                     unit.key, len(stored[i]), skipped[i], len(failures[i]), seconds)
            if failures[i]:
                on_outcome(unit, None, _failure_error(unit, failures[i], len(stored[i]) + len(failures[i])))
            else:
                result = {"fields": stored[i], "skipped": skipped[i], "seconds": seconds,
                          "mpx_channels": len(stored[i]) * ctx.mpx_per_field}
                if session.keeps_payloads:
                    result[PAYLOADS_KEY] = payloads[i]
                on_outcome(unit, result, None)

        def written(key: tuple[str, int], payload: Any) -> None:
            size = _payload_bytes(payload)
            if session.keeps_payloads and size >= 0 and session.keep_payload(size):
                payloads[owner[key]][field_key(*key)] = payload

        def settled(key: tuple[str, int], failure: Any = None) -> None:
            i = owner[key]
            if failure is None:
                stored[i].append(field_key(*key))
            else:
                failures[i].append(failure)
            left[i] -= 1
            if left[i] == 0:
                report(i)

        done = done_keys(ctx.out)  # one listing, not a look-up per field
        for i, unit in enumerate(remaining):
            todo, skipped[i] = ctx.todo(unit, done)
            stored[i], failures[i], left[i], payloads[i] = [], [], len(todo), {}
            owner.update({p: i for p in todo})
            keys.extend(todo)
        for i in range(len(remaining)):
            if left[i] == 0:  # nothing to do: reported in order, before the others finish
                report(i)
        try:
            summary = run_fields(ctx.predictor, keys, ctx.read, ctx.writer, on_done=settled,
                                 on_failure=lambda f: settled(f.key, f),
                                 on_written=written, check_first=first_check.pop() if first_check else None,
                                 writer_pool=session.writer_pool, **ctx.pipeline)
        except ImplausibleOutput as exc:  # the model is unusable: every open unit fails with it
            log.error("prediction stopped: %s", exc)
            for i in range(len(remaining)):
                if i not in reported:
                    on_outcome(remaining[i], None, exc)
            return
        except Exception as exc:  # noqa: BLE001 - the pipeline itself failed: blame the first open unit
            open_units = [i for i in range(len(remaining)) if i not in reported]
            if not open_units:
                raise
            first = open_units[0]
            log.error("unit %s: prediction failed: %s: %s", remaining[first].key, type(exc).__name__, exc)
            on_outcome(remaining[first], None, exc)
            reported.add(first)
            remaining = [u for i, u in enumerate(remaining) if i not in reported]
            continue
        log.info("%d unit(s): %s", len(remaining), summary.summary())
        remaining = []
