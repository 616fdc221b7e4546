"""The stage graph convert -> stats -> train -> predict -> stats (denoised) -> report.

One configuration runs the whole graph, on this machine (:func:`run_pipeline`: local
processes or Dask, through :func:`~jumpdenoise.executors.make_executor`) or on SLURM
(:func:`submit_pipeline`: submitit jobs chained with ``afterok``). Stages are modules with
``prepare/plan/run_one/finalize`` (:mod:`jumpdenoise.stages.base`), imported by name in the
process that runs them. Run state: :mod:`jumpdenoise.run_state`.

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

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from jumpdenoise.errors import ConfigError, UnitFailures
from jumpdenoise.run_state import RunFolder, now, write_json

if TYPE_CHECKING:
    from jumpdenoise.config import JumpDenoiseConfig
    from jumpdenoise.executors.base import Executor, Outcome


@dataclass(frozen=True)
class Stage:
    """One node of the graph.

    Attributes
    ----------
    name
        Stage name (run-state folder, job names, profile overrides).
    module
        Module with ``prepare/plan/run_one/finalize``.
    kind
        ``array`` (units in parallel), ``distributed`` (each unit is one multi-GPU job:
        training) or ``inline`` (run by its prepare job: tiny stages).
    gpus
        Whether its units ask for ``gpus_per_node`` GPUs.
    """

    name: str
    module: str
    kind: Literal["array", "distributed", "inline"] = "array"
    gpus: bool = False


STAGES: tuple[Stage, ...] = (
    Stage("convert", "jumpdenoise.stages.convert"),
    Stage("stats", "jumpdenoise.stages.stats"),
    Stage("train", "jumpdenoise.stages.train", kind="distributed", gpus=True),
    Stage("predict", "jumpdenoise.stages.predict", gpus=True),
    Stage("stats_denoised", "jumpdenoise.stages.stats"),
    Stage("report", "jumpdenoise.stages.report", kind="inline"),
)
BY_NAME = {s.name: s for s in STAGES}


def pipeline_stages(config: JumpDenoiseConfig, until: str | None = None) -> list[Stage]:
    """The stages ``config`` runs, in order, up to ``until`` included (default: all).

    ``convert`` is left out when there is no source (the pipeline then starts from an
    existing ``paths.raw_plate``).
    """
    if until is not None and until not in BY_NAME:
        raise ConfigError(f"until: unknown stage {until!r} (stages: {', '.join(BY_NAME)})")
    stages = []
    for s in STAGES:
        if s.name != "convert" or config.source is not None:
            stages.append(s)
        if s.name == until:
            break
    return stages


def stage_config(stage: Stage, config: JumpDenoiseConfig) -> Any:
    """What the stage functions receive: the config, or a job naming the denoised plate."""
    if stage.name == "stats_denoised":
        from jumpdenoise.stages.stats import StatsJob

        return StatsJob(plate=Path(config.paths.denoised_plate))
    return config


def stage_module(stage: Stage) -> Any:
    """Import the stage's module (raises :class:`ConfigError` naming it when absent)."""
    try:
        return importlib.import_module(stage.module)
    except ModuleNotFoundError as exc:
        if exc.name == stage.module:
            raise ConfigError(f"stage {stage.name}: module {stage.module} is not available") from exc
        raise


def _jsonable(value: Any, limit: int = 20000) -> Any:
    """``value`` when it is small JSON, else a short text (run-state records stay small)."""
    import json

    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = json.dumps(value, default=str)
        value = json.loads(text)
    return value if len(text) <= limit else f"<{type(value).__name__}, {len(text)} characters of JSON>"


def _record(rf: RunFolder, stage: Stage, outcomes: list[Outcome]) -> None:
    for o in outcomes:
        rf.write_unit(stage.name, o.key, ok=o.ok, value=_jsonable(o.value), error=o.error, log=o.log,
                      job_id=(o.extra or {}).get("job_id"))


def _raise_failures(stage: Stage, outcomes: list[Outcome]) -> None:
    failures = {o.key: (o.error or "failed") + (f"\n  log: {o.log}" if o.log else "") for o in outcomes if not o.ok}
    if failures:
        raise UnitFailures(stage.name, failures)


def _finalize(stage: Stage, config: JumpDenoiseConfig, rf: RunFolder, outcomes: list[Outcome]) -> Any:
    """Call the stage's finalize with the Outcome of every unit and mark the stage done."""
    summary = stage_module(stage).finalize(stage_config(stage, config), outcomes)
    rf.write_done(stage.name, _jsonable(summary, limit=4000))
    return summary


def write_dashboard(rf: RunFolder, link: str, *, remote: bool) -> Path:
    """Write the Dask dashboard link (and, for a scheduler on a compute node, the ``ssh -L`` line).

    Returns the path of the file (``<workdir>/dask_dashboard.txt``).
    """
    import socket
    from urllib.parse import urlparse

    url = urlparse(link)
    port = url.port or 8787
    host = url.hostname or "localhost"
    lines = [f"Dask dashboard: {link}"]
    if remote:
        node = socket.gethostname()
        job = os.environ.get("SLURM_JOB_ID")
        lines.append(f"the scheduler runs on {node}" + (f" in SLURM job {job}" if job else ""))
        if host in ("127.0.0.1", "localhost", "::1"):
            lines.append(f"it listens on the loopback interface only: from your laptop, "
                         f"ssh -N -L {port}:localhost:{port} -J <login-node> {node}")
        else:
            lines.append(f"from your laptop: ssh -N -L {port}:{host}:{port} <login-node>")
        lines.append(f"then open http://localhost:{port}/status")
    rf.dashboard_file.parent.mkdir(parents=True, exist_ok=True)
    rf.dashboard_file.write_text("\n".join(lines) + "\n")
    return rf.dashboard_file


def _dask_started(ex: Executor, rf: RunFolder, *, remote: bool) -> None:
    if getattr(ex, "name", "") == "dask":
        client = ex.start()
        write_dashboard(rf, client.dashboard_link, remote=remote)


# ----------------------------------------------------------------------------- local


def run_stage_local(stage: Stage, config: JumpDenoiseConfig, executor: Executor, rf: RunFolder,
                    echo: Callable[[str], None] = print) -> Any:
    """prepare -> plan -> units on ``executor`` -> finalize, recording the run state.

    Distributed and inline stages run in this process (training uses its own devices and
    DataLoader workers, which Dask's daemonic workers could not start).
    """
    from jumpdenoise.executors.local import LocalExecutor
    from jumpdenoise.stages.base import bind

    mod = stage_module(stage)
    cfg = stage_config(stage, config)
    rf.reset_stage(stage.name)
    mod.prepare(cfg)
    units = mod.plan(cfg)
    rf.write_plan(stage.name, units)
    echo(f"[{stage.name}] {len(units)} unit(s) to run")
    runner = executor if stage.kind == "array" else LocalExecutor(1)
    if units and runner is executor:
        _dask_started(executor, rf, remote=bool(config.executor.dask_slurm or config.executor.scheduler_address))
    outcomes = runner.map(bind(stage.module, cfg), units, label=stage.name) if units else []
    _record(rf, stage, outcomes)
    _raise_failures(stage, outcomes)
    return _finalize(stage, config, rf, outcomes)


def save_config(config: JumpDenoiseConfig, rf: RunFolder) -> Path:
    """Write the resolved configuration into the run folder."""
    import yaml

    rf.config_file.parent.mkdir(parents=True, exist_ok=True)
    rf.config_file.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return rf.config_file


def run_pipeline(config: JumpDenoiseConfig, *, executor: Executor | None = None, until: str | None = None,
                 echo: Callable[[str], None] = print) -> RunFolder:
    """Run every stage on this machine; stages already done in ``paths.workdir`` are skipped.

    Parameters
    ----------
    config
        The configuration (``executor.kind`` ``local`` or ``dask``).
    executor
        Runs the units of array stages (default: ``make_executor(config.executor)``).
    until
        Stop after this stage (default: run them all).
    echo
        Where progress lines go.

    Returns
    -------
    RunFolder
        The run folder (``jumpdenoise status`` reads it).

    Raises
    ------
    UnitFailures
        When units of a stage fail (each failure's error and log are named); the stages
        before it stay done, so running again resumes.
    """
    from jumpdenoise.executors import make_executor

    if config.executor.kind == "slurm":
        raise ConfigError("executor.kind: 'slurm' runs with `jumpdenoise submit CONFIG`; "
                          "`jumpdenoise run` uses the local or dask executor")
    rf = RunFolder(Path(config.paths.workdir).absolute())
    stages = pipeline_stages(config, until)
    save_config(config, rf)
    write_json(rf.state_file, {"version": 1, "executor": config.executor.kind, "started_at": now(),
                               "config": str(rf.config_file), "log_dir": None,
                               "stages": [{"name": s.name} for s in stages]})
    own = executor is None
    ex = executor or make_executor(config.executor)
    try:
        for i, stage in enumerate(stages, 1):
            if rf.is_done(stage.name):
                echo(f"{i}/{len(stages)} {stage.name}: already done, skipped")
                continue
            echo(f"{i}/{len(stages)} {stage.name}")
            run_stage_local(stage, config, ex, rf, echo)
    finally:
        if own:
            ex.close()
    return rf
