"""What every stage offers: plan units, run one unit.

A stage module (``jumpdenoise.stages.convert``, ``.stats``, ``.train``, ``.predict``)
exposes four functions, and nothing else is needed to run it anywhere. ``session`` is the
:class:`~jumpdenoise.stages.session.PlateSession` of the process: what the stage caches
across units (a loaded model, a parsed layout, writer processes) lives there, never in
module globals.

``prepare(config, session)``
    Single process, before any unit: writes metadata (plate, wells, field groups).
``plan(config) -> list[Unit]``
    The units still to do (completed units are skipped: rerunning resumes).
``run_one(config, unit, session) -> dict``
    Does one unit; idempotent (running it twice gives the same bytes); records its
    completion only after its data are written.
``finalize(config, outcomes, session)``
    Single process, after all units: merges partial results (e.g. statistics); receives
    the units' outcomes (their results as values).

Optionally:

``run_many(config, units, on_outcome, session)``
    Runs several units in one process in one go (e.g. prediction keeps its
    read/compute/write pipeline full across unit boundaries), calling
    ``on_outcome(unit, result or None, error or None)`` once per unit; the in-process
    executor uses it when the stage has it.
``precheck(config) -> None``
    Runs before ``prepare`` (the output checked and locked, nothing written yet); raising
    stops the stage, and the pipeline, with nothing written (e.g. a model that would make
    a channel worse).
``warm_up_worker() -> None``
    Imports what ``run_one`` needs; run on each worker while ``prepare`` runs.
``in_process_context(config)``
    A context manager held while units run as threads of the driver's process.

What a stage needs from an executor (its kind, GPUs, whether its units may run as threads)
is the :class:`Stage` record below, read by :func:`jumpdenoise.executors.make_executor`;
the stage driver (:func:`jumpdenoise.driver.run_stage`) runs any stage on any executor.
Executors know nothing of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from jumpdenoise.stages.session import PlateSession


class Unit(BaseModel):
    """A small, serialisable, idempotent piece of work.

    Attributes
    ----------
    stage
        Name of the stage the unit belongs to.
    key
        Unique, file-name-safe id within the stage (e.g. ``"A01-f0"`` or ``"wells-0003"``).
    items
        What the unit covers (e.g. ``["A01/0", "A01/1"]``: well/field pairs).
    """

    model_config = ConfigDict(frozen=True)

    stage: str
    key: str
    items: list[str]


class BoundUnit:
    """A picklable callable running one unit of a stage with a fixed config.

    Executors call ``BoundUnit(stage_module_name, config, session)(unit)``; the stage
    module is imported in the worker, so nothing but the config and the unit crosses
    processes. The session is never pickled, only its reference: a copy unpickled in the
    process that holds the session open (a threaded Dask cluster pickles its tasks) uses it;
    a copy in another process (a worker) runs each call in a session of its own, closed when
    the call returns (what it started, e.g. writer processes, ends with it), unless the
    executor gives that process one session for all its units (:meth:`new_worker_session`,
    :meth:`in_session`: a Dask worker loads the model once per stage run, not once per unit).
    """

    def __init__(self, module: str, config: Any, session: PlateSession | None = None) -> None:
        self.module = module
        self.config = config
        self.session = session

    def __getstate__(self) -> dict:
        return {"module": self.module, "config": self.config,
                "session": self.session.reference if self.session is not None else None}

    def __setstate__(self, state: dict) -> None:
        from jumpdenoise.stages.session import live_session

        self.module, self.config = state["module"], state["config"]
        self.session = live_session(state["session"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoundUnit) and (self.module, self.config) == (other.module, other.config)

    def __hash__(self) -> int:
        return hash(self.module)

    @staticmethod
    def new_worker_session() -> PlateSession:
        """A session for the units this stage runs in a worker process (their results travel)."""
        from jumpdenoise.stages.session import PlateSession

        return PlateSession(keeps_payloads=False)

    def in_session(self, session: PlateSession) -> BoundUnit:
        """This stage and config, running its units in ``session`` (e.g. a worker's, from
        :meth:`new_worker_session`; the caller closes it)."""
        return BoundUnit(self.module, self.config, session)

    def __call__(self, unit: Unit) -> dict:
        import importlib

        from jumpdenoise.stages.session import session_or_own

        mod = importlib.import_module(self.module)
        with session_or_own(self.session, keeps_payloads=False) as session:  # own: results travel
            return mod.run_one(self.config, unit, session)

    def run_many(self, units: list[Unit], on_outcome: Callable[[Unit, Any, BaseException | None], None]) -> bool:
        """Run ``units`` in this process with the stage's ``run_many``, if it has one.

        Returns
        -------
        bool
            ``False`` (nothing run) if the stage has no ``run_many``.
        """
        import importlib

        many = getattr(importlib.import_module(self.module), "run_many", None)
        if many is None:
            return False
        from jumpdenoise.stages.session import session_or_own

        with session_or_own(self.session, keeps_payloads=False) as session:
            many(self.config, list(units), on_outcome, session)
        return True


def bind(module: str, config: Any, session: PlateSession | None = None) -> Callable[[Unit], dict]:
    """Return a picklable ``fn(unit)`` for stage module ``module`` and ``config`` (units run
    in ``session`` in this process, in a session of their own elsewhere)."""
    return BoundUnit(module, config, session)


# ----------------------------------------------------------------------------- stage records


@dataclass(frozen=True)
class StageIO:
    """What a stage writes and what it reads, for the output checks of the driver.

    Attributes
    ----------
    output
        The plate or folder the stage writes (locked while the driver runs the stage);
        ``None`` for a stage that writes nothing of its own.
    kind
        What :func:`~jumpdenoise.io.output_guard.recognise` must call the output before
        ``overwrite`` may remove it (``"plate"``, ``"training run"``...).
    inputs
        What the output is made from: neither may contain the other.
    protected
        What must survive a replaced output (may contain the output, not lie inside it).
    overwrite
        Whether the configuration asks to replace an existing output.
    """

    output: Path | None
    kind: str = "plate"
    inputs: tuple[Path, ...] = ()
    protected: tuple[Path, ...] = ()
    overwrite: bool = False


def _paths(*values: Any) -> tuple[Path, ...]:
    return tuple(Path(v) for v in values if v is not None)


def _convert_io(config: Any) -> StageIO:
    source = config.source.path if config.source is not None else None
    return StageIO(Path(config.paths.raw_plate), "plate", _paths(source), overwrite=config.convert.overwrite)


def _stats_io(config: Any) -> StageIO:
    plate = getattr(config, "plate", None) or config.paths.raw_plate
    return StageIO(Path(plate), "plate")


def _train_io(config: Any) -> StageIO:
    return StageIO(Path(config.paths.run_dir), "training run", _paths(config.train.plate or config.paths.raw_plate))


def _predict_io(config: Any) -> StageIO:
    return StageIO(Path(config.paths.denoised_plate), "plate", _paths(config.paths.raw_plate),
                   protected=_paths(config.predict.model or config.paths.run_dir), overwrite=config.predict.overwrite)


def _no_output(config: Any) -> StageIO:
    return StageIO(None)


def _same_config(config: Any) -> Any:
    return config


def _denoised_stats_request(config: Any) -> Any:
    from jumpdenoise.stages.stats import StatsRequest

    return StatsRequest(plate=Path(config.paths.denoised_plate))


def _evaluate_request(config: Any) -> Any:
    from jumpdenoise.stages.evaluate import request_of

    return request_of(config)


def _evaluate_io(request: Any) -> StageIO:
    return StageIO(Path(request.out), "evaluation", _paths(request.raw, request.denoised))


@dataclass(frozen=True)
class Stage:
    """A stage, and what it needs from an executor.

    Attributes
    ----------
    name
        Stage name (run-state folder, job names, profile overrides).
    module
        Module with ``prepare/plan/run_one/finalize``.
    kind
        ``array`` (units in parallel), ``distributed`` (each unit is one multi-GPU job:
        training) or ``inline`` (run by the driver's process: tiny stages).
    gpus
        Whether its units ask for the profile's GPUs (SLURM).
    threads
        Whether its units may run as threads of one process (their heavy work releases
        the GIL: a local Dask cluster then runs threads, not processes).
    in_process
        Whether a local executor runs its units in the driver's process, one after the
        other (the stage is parallel inside, e.g. prediction's read/compute/write pipeline).
    finalize_on_failure
        Whether ``finalize`` runs after failed units too (it merges what was done and
        records the failures); the stage is not marked done then.
    request
        What the stage functions receive (their ``config`` argument), from the pipeline
        configuration: the configuration itself, or a stage request such as
        :class:`~jumpdenoise.stages.stats.StatsRequest`.
    io
        What the stage writes and reads (:class:`StageIO`), from the stage's configuration.
    """

    name: str
    module: str
    kind: Literal["array", "distributed", "inline"] = "array"
    gpus: bool = False
    threads: bool = False
    in_process: bool = False
    finalize_on_failure: bool = False
    request: Callable[[Any], Any] = _same_config
    io: Callable[[Any], StageIO] = _no_output


CONVERT = Stage("convert", "jumpdenoise.stages.convert", threads=True, finalize_on_failure=True, io=_convert_io)
STATS = Stage("stats", "jumpdenoise.stages.stats", io=_stats_io)
TRAIN = Stage("train", "jumpdenoise.stages.train", kind="distributed", gpus=True, io=_train_io)
PREDICT = Stage("predict", "jumpdenoise.stages.predict", gpus=True, in_process=True, finalize_on_failure=True,
                io=_predict_io)
STATS_DENOISED = Stage("stats_denoised", "jumpdenoise.stages.stats", request=_denoised_stats_request,
                       io=_stats_io)
REPORT = Stage("report", "jumpdenoise.stages.report", kind="inline")
VERIFY = Stage("verify", "jumpdenoise.stages.verify", finalize_on_failure=True)
EVALUATE = Stage("evaluate", "jumpdenoise.stages.evaluate", request=_evaluate_request, io=_evaluate_io)

#: The pipeline's stages, in order.
PIPELINE: tuple[Stage, ...] = (CONVERT, STATS, TRAIN, PREDICT, STATS_DENOISED, REPORT, EVALUATE)
#: Every stage by name (pipeline stages and single-command ones).
BY_NAME: dict[str, Stage] = {s.name: s for s in (*PIPELINE, VERIFY)}
