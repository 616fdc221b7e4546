"""Predict stage: a raw OME-Zarr plate + a trained model -> a denoised OME-Zarr plate.

The four stage functions (see :mod:`jumpdenoise.stages.base`) take the root
:class:`~jumpdenoise.config.JumpDenoiseConfig`: input ``paths.raw_plate``, output
``paths.denoised_plate``, model ``predict.model`` (default ``paths.run_dir``).

- :func:`prepare` loads the model (CPU), picks the model's channels by name from the plate,
  and creates the output plate's metadata (same layout, the selected wells, the model's
  channels, a ``provenance`` block) in a staging folder renamed into place. An existing
  output prepared from the same model file, plate and settings is resumed.
- :func:`plan` groups the selected wells into units of ``predict.experimental.wells_per_unit``
  wells (stable keys ``wells-A01-A08``); a unit lists its fields not yet done.
- :func:`run_one` denoises its fields through the prefetch/compute/write-behind pipeline
  (:func:`~jumpdenoise.predict.engine.run_fields`; writer threads, or writer processes on
  CUDA); each field is written, then marked done
  with its partial statistics and its raw-vs-denoised partial
  (:class:`~jumpdenoise.predict.writers.PlateFieldWriter`). Killed at any moment,
  a rerun redoes exactly the fields without a marker, with the same bytes.
- :func:`finalize` merges the partials: statistics (same code as conversion) and the
  comparison (``attrs["jumpdenoise"]["comparison"]``, ``.jumpdenoise/comparison.csv``).
  The payloads of the fields written in the driver's process come in the units' results;
  the others are read from their markers.

The setup helpers (paths, channel and well selection, the predictor kept in the session, the
fingerprint and the prepare record) live in :mod:`jumpdenoise.stages.predict_setup` and are
re-exported here.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from jumpdenoise.errors import ConfigError, OutputExistsError, PlateError
from jumpdenoise.io.ngff_markers import COMPARISON_CSV, FAILURES_FILE, sidecar_path
from jumpdenoise.predict.writers import to_output_dtype
from jumpdenoise.stages.base import Unit
from jumpdenoise.stages.predict_setup import (  # re-exported: the stage's setup helpers
    RECORD_FILE,
    get_predictor,
    model_path,
    out_path,
    raw_path,
    read_predict_record,
    resume_fingerprint,
    resume_settings,
    select_channels,
    selected_fields,
)
from jumpdenoise.stages.predict_units import run_many
from jumpdenoise.stages.session import PAYLOADS_KEY, PlateSession

if TYPE_CHECKING:
    from jumpdenoise.config import JumpDenoiseConfig
    from jumpdenoise.executors.base import Executor, Outcome

STAGE = "predict"
MODULE = "jumpdenoise.stages.predict"

__all__ = ["prepare", "plan", "run_one", "run_many", "finalize", "predict", "select_channels", "to_output_dtype"]


# ----------------------------------------------------------------------------- stage functions


def prepare(config: JumpDenoiseConfig, session: PlateSession) -> dict:
    """Check model and plate, create the output plate's metadata (one process, before any pixel).

    The model is loaded on the CPU, without ``compile``, and kept in ``session``.

    Returns
    -------
    dict
        The prepare record (``selection``, ``channels``, ``dtype``, ``fingerprint``).

    Raises
    ------
    ModelError, PlateError
        Model unusable, or plate lacking a channel / well (the message names them).
    OutputExistsError
        If the output exists, was not prepared with the same model and settings, and
        ``predict.overwrite`` is false.
    """
    import datetime

    import jumpdenoise
    from jumpdenoise.io.ngff import create_plate_like, plate_info

    pc = config.predict
    raw, out = raw_path(config), out_path(config)
    info = plate_info(raw)
    on_cpu = pc.model_copy(update={"device": "cpu",
                                   "experimental": pc.experimental.model_copy(update={"compile": False})})
    predictor = get_predictor(config.model_copy(update={"predict": on_cpu}), session)
    lm = predictor.model
    channels = select_channels(lm, info)
    from jumpdenoise.quality.guard import warn_worse_channels

    warn_worse_channels(lm.source, channels)  # estimated gain <= 0 dB: warn, naming the channels
    selection = selected_fields(config, info)
    try:
        predictor.plan(info.shape_yx)
    except ValueError as exc:
        raise ConfigError(f"predict.tile_size / predict.overlap: {exc} (fields of {info.shape_yx[0]}x"
                          f"{info.shape_yx[1]}, receptive-field radius {predictor.receptive_field})") from None
    out_dtype = "float32" if pc.dtype == "float32" else info.dtype
    fingerprint = resume_fingerprint(lm, raw, resume_settings(config, predictor, channels, out_dtype), session)
    record = {"selection": selection, "channels": channels, "dtype": out_dtype, "fingerprint": fingerprint}
    if out.exists() and not pc.overwrite:
        try:
            previous = read_predict_record(out)
        except PlateError:
            previous = None
        if previous is not None and previous.get("fingerprint") == fingerprint \
                and previous.get("selection") == json.loads(json.dumps(selection)):
            return previous
        why = "not a plate prepared by jumpdenoise predict" if previous is None else \
            "prepared with another model, plate, selection or settings"
        raise OutputExistsError(f"{out} ({why})")
    import torch

    from jumpdenoise.io.output_guard import check_apart, check_removable, remove_output

    check_apart(out, [raw], [model_path(config)])
    if out.exists() or out.is_symlink():
        check_removable(out, "plate")
    provenance = {
        "model": lm.provenance(), "model_sha256": fingerprint["model_sha256"], "raw_plate": str(raw.resolve()),
        "jumpdenoise_version": jumpdenoise.__version__, "torch_version": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tiling": fingerprint["settings"], "bf16": pc.bf16, "tta": pc.tta, "device": pc.device,
    }
    staging = out.with_name(f".{out.name}.preparing")
    if staging.exists():
        shutil.rmtree(staging)
    create_plate_like(raw, staging, dtype=out_dtype, kind="denoised", wells=list(selection), channels=channels,
                      overwrite=True, extra_attrs={"provenance": provenance})
    sidecar_path(staging, RECORD_FILE).write_text(json.dumps(record, indent=1))
    if out.exists() or out.is_symlink():  # overwrite: only a plate jumpdenoise wrote
        remove_output(out, "plate")
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out)
    return read_predict_record(out)


def plan(config: JumpDenoiseConfig) -> list[Unit]:
    """Units of ``predict.experimental.wells_per_unit`` selected wells, listing their fields not yet done."""
    from jumpdenoise.io.ngff import done_keys, field_key

    out = out_path(config)
    selection = read_predict_record(out)["selection"]
    done = done_keys(out)
    wells = list(selection)
    n = config.predict.experimental.wells_per_unit
    units = []
    for i in range(0, len(wells), n):
        group = wells[i:i + n]
        items = [f"{w}/{f}" for w in group for f in selection[w] if field_key(w, f) not in done]
        if items:
            key = f"wells-{group[0]}" + (f"-{group[-1]}" if len(group) > 1 else "")
            units.append(Unit(stage=STAGE, key=key, items=items))
    return units


def run_one(config: JumpDenoiseConfig, unit: Unit, session: PlateSession) -> dict:
    """Denoise the fields of one unit: read, predict, write, then mark each field done.

    Returns
    -------
    dict
        ``{"fields": [keys written], "skipped": n already done, "seconds", "mpx_channels"}``,
        and ``payloads`` in a session that keeps them (see :func:`run_many`).

    Raises
    ------
    JumpDenoiseError
        If some fields could not be read or written (the others are done).
    """
    outcome: list = []
    run_many(config, [unit], lambda u, result, error: outcome.append((result, error)), session)
    result, error = outcome[0]
    if error is not None:
        raise error
    return result


def _split_payload(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A done marker's payload as its statistics arrays and its comparison (``cmp.*``) arrays."""
    from jumpdenoise.predict.compare import PREFIX

    stats = {k: v for k, v in arrays.items() if not k.startswith(PREFIX)}
    return stats, {k: v for k, v in arrays.items() if k.startswith(PREFIX)}


def _load_marker(out: Path, key: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The statistics arrays and the comparison (``cmp.*``) arrays of one done marker."""
    from jumpdenoise.io.ngff_markers import load_done

    return _split_payload(load_done(out, key))


class _Markers(Mapping):
    """Lazy ``{field key: statistics partial}`` over done markers (one loaded at a time).

    Each marker is read once: its comparison arrays (a few numbers) are kept in
    :attr:`comparisons` as the statistics are merged (reading every marker twice cost
    about 2 ms per field, i.e. seconds on a whole plate). A marker whose payload came with
    the units' results (``written``) is not read at all (reading and parsing cost about 1 ms
    per field).
    """

    def __init__(self, out: Path, keys: list[str], written: dict[str, dict] | None = None) -> None:
        self.out, self.keys = out, list(keys)
        self.written = written or {}
        self.comparisons: dict[str, dict[str, np.ndarray]] = {}

    def __getitem__(self, key: str) -> dict[str, np.ndarray]:
        payload = self.written.pop(key, None)
        stats, comparison = _load_marker(self.out, key) if payload is None else _split_payload(payload)
        self.comparisons[key] = comparison
        return stats

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def finalize(config: JumpDenoiseConfig, results: list[Outcome], session: PlateSession) -> dict:
    """Merge the done fields' partials: statistics, raw-vs-denoised comparison, failures.

    The marker payloads that the results carry (``payloads``, see :func:`run_many`) are
    taken from them (and dropped from the results); the other fields' markers are read.

    Returns
    -------
    dict
        ``{"done": fields done, "expected": fields selected, "failures": {unit: error}}``.
    """
    from jumpdenoise.compute.stats import merge_partials
    from jumpdenoise.io.ngff import done_keys, field_key, update_group_attrs, write_statistics
    from jumpdenoise.predict.compare import merge_comparison, write_comparison_csv
    from jumpdenoise.stages.convert import short_error

    out = out_path(config)
    record = read_predict_record(out)
    channels = record["channels"]
    done = done_keys(out)
    order = [field_key(w, f) for w, fs in record["selection"].items() for f in fs]
    keys = [k for k in order if k in done]
    written: dict[str, dict] = {}
    for o in results:
        if o.ok and isinstance(o.value, dict):
            written.update(o.value.pop(PAYLOADS_KEY, None) or {})
    if keys:
        markers = _Markers(out, keys, written)
        write_statistics(out, merge_partials(markers, channels))
        comparison = merge_comparison({k: markers.comparisons[k] if k in markers.comparisons
                                       else _load_marker(out, k)[1] for k in keys}, channels)

        def set_comparison(attrs: dict) -> None:
            attrs.setdefault("jumpdenoise", {})["comparison"] = comparison

        update_group_attrs(out, set_comparison)
        write_comparison_csv(comparison, sidecar_path(out, COMPARISON_CSV))
    failures = {o.key: short_error(o.error) for o in results if not o.ok}
    sidecar_path(out, FAILURES_FILE).write_text(json.dumps(
        {o.key: {"error": short_error(o.error), "traceback": o.error, "log": o.log} for o in results if not o.ok},
        indent=1))
    return {"done": len(keys), "expected": len(order), "failures": failures}


# ----------------------------------------------------------------------------- convenience


def predict(config: JumpDenoiseConfig | None = None, *, model: str | Path | None = None,
            plate: str | Path | None = None, out: str | Path | None = None, executor: Executor | None = None,
            echo: Callable[[str], None] | None = None, wait_s: float = 0.0, **settings: Any) -> Path:
    """Denoise a plate: prepare, run every unit, finalize; returns the output plate.

    Parameters
    ----------
    config
        Root configuration (default: the defaults); ``model``, ``plate``, ``out`` and
        ``settings`` (fields of :class:`~jumpdenoise.config.predict.PredictConfig`, e.g.
        ``wells=["A01"]``, ``bf16=True``, or of its ``experimental`` section, by name, e.g.
        ``write_processes=2``) override it.
    executor
        Where units run (default: ``make_executor(config.executor, PREDICT)``: this process
        for a local executor, the engine being parallel inside).
    echo
        Called with a one-line summary (``already complete`` when nothing was left to denoise);
        ``None``: silent.
    wait_s
        How long to wait when another run holds the output (default: refuse at once).

    Raises
    ------
    UnitFailures
        After finalize, when some units failed (the other fields are done).
    """
    from jumpdenoise.config import JumpDenoiseConfig, _format_validation_error
    from jumpdenoise.config.predict import PredictExperimental
    from jumpdenoise.driver import run_stage
    from jumpdenoise.stages.base import PREDICT
    from pydantic import ValidationError

    data = (config or JumpDenoiseConfig()).model_dump()
    if model is not None:
        data["predict"]["model"] = str(Path(model).resolve())
    if plate is not None:
        data["paths"]["raw_plate"] = str(Path(plate).resolve())
    if out is not None:
        data["paths"]["denoised_plate"] = str(Path(out).resolve())
    experimental = {k: settings.pop(k) for k in list(settings) if k in PredictExperimental.model_fields}
    data["predict"].update(settings)
    data["predict"]["experimental"].update(experimental)
    try:
        cfg = JumpDenoiseConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, "predict arguments")) from None
    run = run_stage(PREDICT, cfg, executor, check=False, wait_s=wait_s)
    summary = run.summary or {}
    if echo is not None and run.already_complete:
        echo(f"already complete: {out_path(cfg)} ({summary.get('done')}/{summary.get('expected')} field(s) "
              "denoised earlier; nothing to do)")
    elif echo is not None:
        echo(f"denoised {summary.get('done')}/{summary.get('expected')} field(s) into {out_path(cfg)} "
              f"in {run.seconds:.1f} s")
    run.check()
    return out_path(cfg)
