"""The one driver of a stage: prepare -> plan -> units on an executor -> finalize.

Every way of running a stage goes through here: the single-stage commands (``convert``,
``predict``, ``stats``, ``verify``, ``train``), the local pipeline (:mod:`jumpdenoise.pipeline`)
and the SLURM jobs (:mod:`jumpdenoise.pipeline_slurm`, which runs :func:`begin_stage` in
its prepare job and :func:`finish_stage` in its finalize job). The driver applies the output
checks once (:mod:`jumpdenoise.io.output_guard`): the output may not overlap its inputs,
``overwrite`` removes only what jumpdenoise wrote, and the output is locked while the driver
works on it. A read-only, forbidden or full output becomes one
:class:`~jumpdenoise.errors.OutputWriteError` line.

A *recorder* keeps the run state: the pipeline's :class:`~jumpdenoise.run_state.RunState`,
or :class:`NullRecorder` for single commands. A *session*
(:class:`~jumpdenoise.stages.session.PlateSession`) holds what the stage caches across units
in this process; the driver makes it, passes it to the stage functions and closes it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from jumpdenoise.errors import ConfigError, UnitFailures
from jumpdenoise.io import output_guard
from jumpdenoise.io.output_lock import DEFAULT_STALE_S, OutputLock
from jumpdenoise.stages.base import Stage, StageIO, Unit, bind
from jumpdenoise.stages.session import PAYLOADS_KEY, PlateSession, session_or_own

if TYPE_CHECKING:
    from jumpdenoise.executors.base import Executor, Outcome


class Recorder(Protocol):
    """Where the driver records a stage's plan, unit outcomes and completion."""

    def reset_stage(self, stage: str) -> None: ...  # pragma: no cover - protocol

    def write_plan(self, stage: str, units: list[Any],
                   arrays: list[dict] | None = None) -> None: ...  # pragma: no cover - protocol

    def write_unit(self, stage: str, key: str, *, ok: bool, value: Any = None, error: str | None = None,
                   log: str | None = None, job_id: str | None = None) -> None: ...  # pragma: no cover

    def write_done(self, stage: str, summary: Any = None) -> None: ...  # pragma: no cover - protocol

    def write_dashboard(self, link: str, *, remote: bool) -> None: ...  # pragma: no cover - protocol


class NullRecorder:
    """The recorder of single commands: records nothing."""

    def reset_stage(self, stage: str) -> None:
        """Nothing to forget."""

    def write_plan(self, stage: str, units: list[Any], arrays: list[dict] | None = None) -> None:
        """Nothing recorded."""

    def write_unit(self, stage: str, key: str, **outcome: Any) -> None:
        """Nothing recorded."""

    def write_done(self, stage: str, summary: Any = None) -> None:
        """Nothing recorded."""

    def write_dashboard(self, link: str, *, remote: bool) -> None:
        """The executor prints the link itself."""


@dataclass
class StageRun:
    """What :func:`run_stage` did.

    Attributes
    ----------
    stage
        The stage.
    prepared
        What the stage's ``prepare`` returned (e.g. the conversion's source layout).
    units
        The units planned (those not done before this run).
    outcomes
        One outcome per unit.
    summary
        What the stage's ``finalize`` returned.
    seconds
        Wall time of the whole run.
    output
        The stage's output (named in the failures of units that could not write it).
    """

    stage: Stage
    prepared: Any = None
    units: list[Unit] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    summary: Any = None
    seconds: float = 0.0
    output: Path | None = None

    @property
    def already_complete(self) -> bool:
        """Whether there was nothing left to do (a rerun on a complete output)."""
        return not self.units

    @property
    def failures(self) -> dict[str, str]:
        """Unit key -> last line of the error, for every unit that failed."""
        return failures_of(self.outcomes, self.output)

    def check(self) -> None:
        """Raise :class:`~jumpdenoise.errors.UnitFailures` if some unit failed."""
        if self.failures:
            raise UnitFailures(self.stage.name, self.failures)


def stage_module(stage: Stage) -> Any:
    """Import the stage's module (raises :class:`ConfigError` naming it when absent)."""
    try:
        return importlib.import_module(stage.module)
    except ModuleNotFoundError as exc:
        if exc.name == stage.module:
            raise ConfigError(f"stage {stage.name}: module {stage.module} is not available") from exc
        raise


def jsonable(value: Any, limit: int = 20000) -> Any:
    """``value`` when it is small JSON, else a short text (run-state records stay small)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = json.dumps(value, default=str)
        value = json.loads(text)
    return value if len(text) <= limit else f"<{type(value).__name__}, {len(text)} characters of JSON>"


def record_outcomes(recorder: Recorder, stage: Stage, outcomes: list[Outcome]) -> None:
    """Record every unit's outcome (value kept small, error text and log path)."""
    for o in outcomes:
        value = o.value
        if isinstance(value, dict) and PAYLOADS_KEY in value:  # for finalize only, never recorded
            value = {k: v for k, v in value.items() if k != PAYLOADS_KEY}
        recorder.write_unit(stage.name, o.key, ok=o.ok, value=jsonable(value), error=o.error, log=o.log,
                            job_id=(o.extra or {}).get("job_id"))


def failures_of(outcomes: list[Outcome], output: Path | None = None) -> dict[str, str]:
    """Unit key -> the error's last line (and log path) of every failed unit.

    A unit that failed writing (full, read-only or forbidden disk) also names ``output`` and
    the cause in words (free bytes for a full disk).
    """
    from jumpdenoise.stages.convert_report import short_error

    failures = {}
    for o in outcomes:
        if o.ok:
            continue
        text = short_error(o.error or "failed")
        errno = (o.extra or {}).get("errno")
        if errno and output is not None and output_guard.is_write_error(OSError(errno, "")):
            detail = output_guard.write_error(OSError(errno, ""), output).cause.partition(" (")[2].rstrip(")")
            text += f" (output {output}" + (f", {detail})" if detail else ")")
        failures[o.key] = text + (f"\n    log: {o.log}" if o.log else "")
    return failures


# ----------------------------------------------------------------------------- output checks


def check_outputs(stage: Stage, request: Any) -> StageIO:
    """Refuse, before anything is written, an output that overlaps its inputs or that
    ``overwrite`` would remove without jumpdenoise having written it."""
    io = stage.io(request)
    if io.output is not None:
        output_guard.check_apart(io.output, io.inputs, io.protected)
        if io.overwrite:
            output_guard.check_removable(io.output, io.kind)
    return io


@contextlib.contextmanager
def output_lock(io: StageIO, token: str | None = None, wait_s: float = 0.0,
                stale_s: float = DEFAULT_STALE_S) -> Iterator[None]:
    """Hold the lock of the stage's output (nothing for a stage without output, or a DDP
    rank other than 0: the ranks of one training share rank 0's lock)."""
    from jumpdenoise.train.run_folder import is_global_zero

    if io.output is None or not is_global_zero():
        yield
        return
    with OutputLock(io.output, token=token, wait_s=wait_s, stale_s=stale_s):
        yield


@contextlib.contextmanager
def write_errors(io: StageIO, failed: dict[str, str] | None = None) -> Iterator[None]:
    """Turn an ``OSError`` of a full, read-only or forbidden output into one error line.

    Temporaries (``*.tmp``) the failed step left at the top of the output and in its
    sidecar are removed; ``failed`` (unit failures of this run) is summarised in the line.
    """
    before = _temporaries(io.output)
    try:
        yield
    except OSError as exc:
        for tmp in _temporaries(io.output) - before:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if not output_guard.is_write_error(exc):
            raise
        err = output_guard.write_error(exc, io.output)
        if failed:
            err.args = (f"{err}; besides, {len(failed)} unit(s) failed: "
                        + "; ".join(f"{k}: {v.splitlines()[0]}" for k, v in sorted(failed.items())),)
        raise err from None


def _temporaries(output: Path | None) -> set[Path]:
    from jumpdenoise.io.ngff_markers import SIDECAR

    if output is None:
        return set()
    found: set[Path] = set()
    for folder in (output, output / SIDECAR):
        with contextlib.suppress(OSError):
            found.update(p for p in folder.iterdir() if p.name.endswith(".tmp") and p.is_file())
    return found


# ----------------------------------------------------------------------------- the steps


def begin_stage(stage: Stage, request: Any, recorder: Recorder,
                session: PlateSession | None = None) -> tuple[Any, list[Unit]]:
    """Precheck, prepare and plan (the caller holds the output lock); records the plan.

    ``session``: the process's :class:`PlateSession` (default: one for this call only).

    Returns
    -------
    tuple
        What ``prepare`` returned, and the units still to do.
    """
    mod = stage_module(stage)
    io = stage.io(request)
    recorder.reset_stage(stage.name)
    precheck = getattr(mod, "precheck", None)
    if precheck is not None:
        precheck(request)
    with write_errors(io), session_or_own(session) as session:
        prepared = mod.prepare(request, session)
        units = mod.plan(request)
    recorder.write_plan(stage.name, units)
    return prepared, units


def finish_stage(stage: Stage, request: Any, recorder: Recorder, outcomes: list[Outcome], *, check: bool = True,
                 session: PlateSession | None = None) -> Any:
    """Finalize after the units and mark the stage done, unless units failed.

    A stage that finalizes partial results (conversion, prediction) is finalized even when
    some units failed; the stage is then not marked done.

    Parameters
    ----------
    check
        Raise the unit failures (else the caller does, e.g. after printing a report).
    session
        The process's :class:`PlateSession` (default: one for this call only).

    Raises
    ------
    UnitFailures
        Naming each failed unit and the last line of its error.
    OutputWriteError
        When finalize cannot write (with the unit failures, if any, in the same line).
    """
    io = stage.io(request)
    failed = failures_of(outcomes, io.output)
    summary = None
    if not failed or stage.finalize_on_failure:
        with write_errors(io, failed), session_or_own(session) as session:
            summary = stage_module(stage).finalize(request, outcomes, session)
    if failed:
        if check:
            raise UnitFailures(stage.name, failed)
        return summary
    recorder.write_done(stage.name, jsonable(summary, limit=4000))
    return summary


def start_dask(executor: Executor, recorder: Recorder, *, remote: bool) -> None:
    """Start a Dask executor's cluster and record its dashboard link (other executors: nothing).

    ``remote``: the scheduler runs on another machine than the user's (a compute node).
    """
    if getattr(executor, "name", "") == "dask":
        client = executor.start()
        recorder.write_dashboard(client.dashboard_link, remote=remote)


def run_stage(stage: Stage, config: Any, executor: Executor | None = None, recorder: Recorder | None = None, *,
              token: str | None = None, echo: Callable[[str], None] | None = None, wait_s: float = 0.0,
              check: bool = True) -> StageRun:
    """Run ``stage`` from start to end: checks, lock, prepare, plan, units, finalize.

    Parameters
    ----------
    stage
        The stage (:data:`jumpdenoise.stages.base.BY_NAME`).
    config
        The pipeline configuration (the stage receives ``stage.request(config)``).
    executor
        Runs the units of an array stage; default ``make_executor(config.executor, stage)``,
        closed here (while finalize runs). Other stages run in this process.
    recorder
        Run-state writer (default: :class:`NullRecorder`).
    token
        The run's lock token (processes of one run share the lock).
    echo
        Where the line announcing the units goes (default: nowhere).
    wait_s
        How long to wait for an output another run holds.
    check
        Raise the unit failures (default); else return them in :attr:`StageRun.failures`
        (:meth:`StageRun.check` raises them).

    The stage functions that run in this process share one :class:`PlateSession` (closed
    when the stage ends, whatever happened); units in worker processes get their own (one per
    Dask worker process for the whole stage run).

    Raises
    ------
    UnsafeOutputError, OutputInUseError, OutputWriteError, UnitFailures
        See :func:`check_outputs`, :class:`~jumpdenoise.io.output_lock.OutputLock`,
        :func:`write_errors`, :func:`finish_stage`.
    """
    from concurrent.futures import ThreadPoolExecutor

    from jumpdenoise.executors import make_executor
    from jumpdenoise.executors.local import LocalExecutor

    start = time.perf_counter()
    recorder = recorder or NullRecorder()
    request = stage.request(config)
    io = check_outputs(stage, request)
    mod = stage_module(stage)
    own = executor is None or stage.kind != "array"
    if stage.kind != "array":
        executor = LocalExecutor(1)
    elif executor is None:
        from jumpdenoise.config.executor import ExecutorConfig

        # a request without executor settings (e.g. statistics of one plate) runs in this process
        executor = make_executor(getattr(config, "executor", None) or ExecutorConfig(workers=1), stage)
    run = StageRun(stage, output=io.output)
    session = PlateSession()  # what the stage caches across units in this process; closed at the end
    background = ThreadPoolExecutor(1, thread_name_prefix=f"{stage.name}-executor")
    closing = None
    try:
        ex_cfg = getattr(config, "executor", None)
        stale_s = getattr(ex_cfg, "lock_stale_s", DEFAULT_STALE_S)
        with output_lock(io, token, wait_s, stale_s):
            # start the cluster and import the hot path on its workers while prepare runs
            warm_up, worker_imports = getattr(executor, "warm_up", None), getattr(mod, "warm_up_worker", None)
            warming = background.submit(warm_up, worker_imports) if warm_up and worker_imports else None
            try:
                run.prepared, run.units = begin_stage(stage, request, recorder, session)
            finally:
                if warming is not None:
                    warming.exception()  # never close a cluster while it starts
            if echo is not None:
                echo(f"[{stage.name}] {len(run.units)} unit(s) to run")
            if run.units:
                start_dask(executor, recorder,
                           remote=bool(ex_cfg is not None and (ex_cfg.dask_slurm or ex_cfg.scheduler_address)))
                context = getattr(mod, "in_process_context", None)
                with context(request) if context is not None else contextlib.nullcontext():
                    run.outcomes = executor.map(bind(stage.module, request, session), run.units, label=stage.name)
            record_outcomes(recorder, stage, run.outcomes)
            if own:
                closing = background.submit(executor.close)  # overlaps finalize
            run.summary = finish_stage(stage, request, recorder, run.outcomes, check=check, session=session)
    finally:
        if own and closing is None:
            executor.close()
        if closing is not None:
            closing.result()
        background.shutdown()
        session.close()
    run.seconds = time.perf_counter() - start
    return run
