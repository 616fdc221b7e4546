"""The stage graph convert -> stats -> train -> predict -> stats (denoised) -> report.

One configuration runs the whole graph, on this machine (:func:`run_pipeline`: local
processes or Dask, through :func:`~jumpdenoise.executors.make_executor`) or on SLURM
(:func:`~jumpdenoise.pipeline_slurm.submit_pipeline`: submitit jobs chained with ``afterok``).
Stages are modules with ``prepare/plan/run_one/finalize`` described by a
:class:`~jumpdenoise.stages.base.Stage` record, imported by name in the process that runs
them, and always run by the one driver, :func:`jumpdenoise.driver.run_stage`. Run state:
:class:`jumpdenoise.run_state.RunState`.

On SLURM every stage is three jobs, submitted at once so that ``squeue`` shows the whole chain::

    <stage>-prepare   (small job, afterok: previous stage's finalize)
        runs prepare() + plan() (cheap metadata, on a compute node with the data mounted),
        then submits the units (an array, split at max_array_size; training: ONE multi-GPU
        job) with afterok on itself, and points its finalize job at them
        (``scontrol update Dependency=afterok:<arrays>``)
    <stage> array      one task per unit
    <stage>-finalize  (small job) merges the results, marks the stage done

The number of units is only known once the previous stage has run (prediction plans over
the converted plate), hence the prepare job sizes its own array. A failed unit fails its
task; ``afterok`` and ``DependencyParameters=kill_invalid_depend`` then cancel the rest of the
chain. ``submit`` again resubmits from the first stage not done, and each stage's plan()
skips the units already done: only what is missing or failed runs again.
With ``executor.kind: dask`` the units of CPU stages run in the prepare job through Dask
(dask-jobqueue workers when ``dask_slurm``), whose dashboard link lands in the run folder.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from jumpdenoise.driver import run_stage
from jumpdenoise.errors import ConfigError, UnsafeOutputError
from jumpdenoise.io import output_guard
from jumpdenoise.io.output_lock import OutputLock
from jumpdenoise.run_state import RunState, now, write_json
from jumpdenoise.stages.base import PIPELINE, Stage

if TYPE_CHECKING:
    from jumpdenoise.config import JumpDenoiseConfig
    from jumpdenoise.executors.base import Executor

#: Pipeline stages by name.
BY_NAME: dict[str, Stage] = {s.name: s for s in PIPELINE}


def pipeline_stages(config: JumpDenoiseConfig, until: str | None = None) -> list[Stage]:
    """The stages ``config`` runs, in order, up to ``until`` included (default: all).

    ``convert`` is left out when there is no source (the pipeline then starts from an
    existing ``paths.raw_plate``); ``evaluate`` when the configuration has no ``evaluate``
    section.
    """
    if until is not None and until not in BY_NAME:
        raise ConfigError(f"until: unknown stage {until!r} (stages: {', '.join(BY_NAME)})")
    stages = []
    for s in PIPELINE:
        skipped = (s.name == "convert" and config.source is None) or (
            s.name == "evaluate" and getattr(config, "evaluate", None) is None)
        if not skipped:
            stages.append(s)
        if s.name == until:
            break
    return stages


def check_before_stage(stage: Stage, config: JumpDenoiseConfig) -> None:
    """What a pipeline checks before a stage, beyond the stage's own checks.

    Before ``predict``: the model's estimated gain per channel (written by the train stage,
    :func:`jumpdenoise.quality.guard.check_gain_before_predict`); a channel the model would
    make worse stops the pipeline unless ``predict.allow_worse``. A single ``jumpdenoise
    predict`` only warns.

    Raises
    ------
    HarmfulModelError
        Naming the channels and what to do.
    """
    if stage.name == "predict":
        from jumpdenoise.quality.guard import check_gain_before_predict

        check_gain_before_predict(config)


def check_workdir(config: JumpDenoiseConfig) -> None:
    """Refuse a run folder that overlaps the source plate (before anything is written).

    Raises
    ------
    UnsafeOutputError
        If the run folder is the source or lies inside it (the source may lie inside
        the run folder, as in the demo).
    """
    if config.source is None:
        return
    source = output_guard.resolved(config.source.path)
    workdir = output_guard.resolved(config.paths.workdir)
    if workdir == source or (source.is_dir() and source in workdir.parents):
        raise UnsafeOutputError(f"run folder {config.paths.workdir} is or lies inside the source "
                                f"{config.source.path}; choose a run folder outside it")


def run_pipeline(config: JumpDenoiseConfig, *, executor: Executor | None = None, until: str | None = None,
                 echo: Callable[[str], None] = print, wait_s: float = 0.0, token: str | None = None) -> RunState:
    """Run every stage on this machine; stages already done in ``paths.workdir`` are skipped.

    Parameters
    ----------
    config
        The configuration (``executor.kind`` ``local`` or ``dask``).
    executor
        Runs the units of every array stage (default: per stage,
        ``make_executor(config.executor, stage)``, shared by stages that need the same).
    until
        Stop after this stage (default: run them all).
    echo
        Where progress lines go.
    wait_s
        How long to wait when another run holds the run folder.
    token
        The run's lock token (default: a new one); a caller holding the run folder's lock
        passes its token.

    Returns
    -------
    RunState
        The run state (``jumpdenoise status`` reads it).

    Raises
    ------
    UnitFailures
        When units of a stage fail (each failure's error and log are named); the stages
        before it stay done, so running again resumes.
    OutputInUseError
        When another run holds the run folder.
    """
    if config.executor.kind == "slurm":
        raise ConfigError("executor.kind: 'slurm' runs with `jumpdenoise submit CONFIG`; "
                          "`jumpdenoise run` uses the local or dask executor")
    check_workdir(config)
    rs = RunState(Path(config.paths.workdir).absolute())
    stages = pipeline_stages(config, until)
    token = token or uuid.uuid4().hex  # the stages of this run share its locks
    with OutputLock(rs.workdir, token=token, wait_s=wait_s, stale_s=config.executor.lock_stale_s):
        rs.save_config(config)
        write_json(rs.state_file, {"version": 1, "executor": config.executor.kind, "started_at": now(),
                                   "config": str(rs.config_file), "log_dir": None,
                                   "stages": [{"name": s.name} for s in stages]})
        executors: dict[tuple, Executor] = {}
        try:
            for i, stage in enumerate(stages, 1):
                if rs.is_done(stage.name):
                    echo(f"{i}/{len(stages)} {stage.name}: already done, skipped")
                    continue
                echo(f"{i}/{len(stages)} {stage.name}")
                check_before_stage(stage, config)
                run_stage(stage, config, executor or _shared_executor(executors, config, stage), rs,
                          token=token, echo=echo)
        finally:
            for ex in executors.values():
                ex.close()
    return rs


def _shared_executor(executors: dict[tuple, Executor], config: JumpDenoiseConfig, stage: Stage) -> Executor | None:
    """The executor of ``stage``, made once per shape (stages of the same needs share it)."""
    from jumpdenoise.executors import make_executor

    if stage.kind != "array":
        return None  # the driver runs it in this process
    shape = (stage.threads, stage.in_process, stage.gpus)
    if shape not in executors:
        executors[shape] = make_executor(config.executor, stage)
    return executors[shape]
