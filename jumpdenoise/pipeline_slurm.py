"""The pipeline on SLURM: submission, the jobs' own functions, and dry-run plans.

See :mod:`jumpdenoise.pipeline` for the shape of the job chain. The functions named
``job_*`` and :class:`UnitTask` run inside SLURM jobs (pickled by submitit by reference, so
the cluster needs jumpdenoise installed in the environment the profile's ``setup`` lines
activate).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from jumpdenoise.errors import ClusterError
from jumpdenoise.pipeline import (
    BY_NAME, Stage, _dask_started, _finalize, _jsonable, _raise_failures, _record, pipeline_stages, save_config,
    stage_config, stage_module,
)
from jumpdenoise.run_state import RunFolder, now, write_json

if TYPE_CHECKING:
    from jumpdenoise.config import JumpDenoiseConfig, SlurmProfile
    from jumpdenoise.executors.base import Outcome
    from jumpdenoise.executors.slurm import SlurmExecutor


def _run_folder(config: JumpDenoiseConfig) -> RunFolder:
    return RunFolder(Path(config.paths.workdir).absolute())


# ----------------------------------------------------------------------------- inside jobs


@dataclass(frozen=True)
class UnitTask:
    """One unit of a stage, in an array task (or in every rank of the training job).

    Runs ``run_one`` and records the outcome (rank 0 only) with the task's log path; a
    failure is re-raised so that the task fails and ``afterok`` stops the chain.
    """

    stage: str
    config: Any

    def __call__(self, unit: Any) -> Any:
        from jumpdenoise.executors.base import error_text

        stage = BY_NAME[self.stage]
        rf = _run_folder(self.config)
        log = job_id = None
        try:
            import submitit

            env = submitit.JobEnvironment()
            log, job_id = str(env.paths.stderr), env.job_id
        except RuntimeError:  # not in a submitit job (tests calling it directly)
            pass
        rank = int(os.environ.get("SLURM_PROCID", "0"))
        try:
            value = stage_module(stage).run_one(stage_config(stage, self.config), unit)
        except Exception as exc:
            if rank == 0:
                rf.write_unit(stage.name, unit.key, ok=False, error=error_text(exc), log=log, job_id=job_id)
            raise
        if rank == 0:
            rf.write_unit(stage.name, unit.key, ok=True, value=_jsonable(value), log=log, job_id=job_id)
        return value


def _update_dependency(job_id: str, dependency: str) -> None:
    cmd = ["scontrol", "update", f"JobId={job_id}", f"Dependency={dependency}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed: {res.stderr.strip() or res.stdout.strip()}")


def job_prepare(stage_name: str, config: JumpDenoiseConfig, executor: SlurmExecutor) -> dict:
    """The ``<stage>-prepare`` job: prepare, plan, submit the units, retarget finalize.

    Inline stages run completely here; with a Dask executor the units of CPU stages run
    here too (through the Dask cluster). Returns ``{"units": n, "arrays": [...]}``.
    """
    import submitit

    from jumpdenoise.executors.slurm import base_id, dependency_string

    stage = BY_NAME[stage_name]
    rf = _run_folder(config)
    cfg = stage_config(stage, config)
    mod = stage_module(stage)
    mod.prepare(cfg)
    units = mod.plan(cfg)
    if stage.kind == "inline" or (units and stage.kind == "array" and not stage.gpus
                                  and config.executor.kind == "dask"):
        rf.write_plan(stage.name, units)
        outcomes = _run_here(stage, config, cfg, units, rf)
        if stage.kind == "inline":
            _finalize(stage, config, rf, outcomes)
        return {"units": len(units), "arrays": []}
    jobs: list[Any] = []
    me = os.environ.get("SLURM_JOB_ID")
    with submitit.helpers.clean_env():
        if units and stage.kind == "distributed":
            jobs = [executor.submit_distributed(UnitTask(stage.name, config), unit, name=stage.name,
                                                dependency=[me] if me else None, stage=stage.name)
                    for unit in units]
        elif units:
            jobs = executor.submit_stage(UnitTask(stage.name, config), units, name=stage.name,
                                         dependency=[me] if me else None, stage=stage.name, gpus=stage.gpus)
    arrays: list[dict] = []
    for i, job in enumerate(jobs):
        b = base_id(job.job_id)
        if arrays and arrays[-1]["job_id"] == b:
            arrays[-1]["count"] += 1
        else:
            arrays.append({"job_id": b, "first": i, "count": 1, "array": "_" in job.job_id})
    rf.write_plan(stage.name, units, arrays)
    finalize_job = (rf.state().get("jobs", {}).get(stage.name) or {}).get("finalize")
    if arrays and finalize_job:
        _update_dependency(finalize_job, dependency_string(a["job_id"] for a in arrays))
    return {"units": len(units), "arrays": arrays}


def _run_here(stage: Stage, config: JumpDenoiseConfig, cfg: Any, units: list, rf: RunFolder) -> list[Outcome]:
    from jumpdenoise.executors import make_executor
    from jumpdenoise.executors.local import LocalExecutor
    from jumpdenoise.stages.base import bind

    ex = make_executor(config.executor) if config.executor.kind == "dask" and stage.kind == "array" \
        else LocalExecutor(1)
    try:
        if units:
            _dask_started(ex, rf, remote=True)
        outcomes = ex.map(bind(stage.module, cfg), units, label=stage.name) if units else []
    finally:
        ex.close()
    _record(rf, stage, outcomes)
    _raise_failures(stage, outcomes)
    return outcomes


def job_finalize(stage_name: str, config: JumpDenoiseConfig) -> Any:
    """The ``<stage>-finalize`` job: gather the recorded unit outcomes, finalize, mark done."""
    from jumpdenoise.executors.base import Outcome

    stage = BY_NAME[stage_name]
    rf = _run_folder(config)
    plan = rf.plan(stage.name) or {"units": []}
    outcomes = []
    for u in plan["units"]:
        rec = rf.unit(stage.name, u["key"]) or {}
        outcomes.append(Outcome(u["key"], bool(rec.get("ok")), value=rec.get("value"),
                                error=rec.get("error") or ("no result recorded" if not rec else None),
                                log=rec.get("log")))
    _raise_failures(stage, outcomes)
    return _finalize(stage, config, rf, outcomes)


# ----------------------------------------------------------------------------- submitting


def resources(prof: SlurmProfile, *, gpus: bool, nodes: int = 1, tasks: int = 1) -> str:
    """One line describing the resources of a job (``tasks`` per node)."""
    parts = [f"{nodes} node(s)"]
    if tasks > 1:
        parts.append(f"{tasks} task(s)/node")
    parts += [f"{prof.cpus_per_task} CPU/task", f"{prof.mem_gb:g} GB", f"{prof.time_min} min"]
    if gpus and prof.gpus_per_node:
        parts.append(f"{prof.gpus_per_node} GPU/node")
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(prof, key):
            parts.append(f"{key} {getattr(prof, key)}")
    return ", ".join(parts)


def estimate_units(stage: Stage, config: JumpDenoiseConfig) -> int | None:
    """How many units the stage would plan now, when that can be told before it runs."""
    try:
        return len(stage_module(stage).plan(stage_config(stage, config)))
    except Exception:  # noqa: BLE001 - its input does not exist yet
        pass
    if stage.name == "convert" and config.source is not None:
        try:
            from jumpdenoise.io.discovery import discover

            layout = discover(config.source)
            n = sum(len(w.fields) for w in layout.wells)
            return -(-n // config.convert.fields_per_unit)
        except Exception:  # noqa: BLE001 - reported as unknown
            return None
    return None


def plan_lines(config: JumpDenoiseConfig, profile: SlurmProfile, until: str | None = None) -> list[str]:
    """The dry-run plan: stages, units, jobs, resources and dependencies."""
    rf = _run_folder(config)
    lines = [f"run folder: {rf.workdir}", f"job logs:   {rf.log_dir}"]
    control = profile.for_stage("control")
    previous = None
    for stage in pipeline_stages(config, until):
        if rf.is_done(stage.name):
            lines.append(f"- {stage.name}: already done, not resubmitted")
            continue
        prof = profile.for_stage(stage.name)
        n = estimate_units(stage, config)
        after = f"afterok {previous}-finalize" if previous else "no dependency"
        lines.append(f"- {stage.name} ({stage.module})")
        lines.append(f"    {stage.name}-prepare: 1 job [{resources(control, gpus=False)}], {after}")
        units = f"{n} unit(s)" if n is not None else "units planned by the prepare job"
        if stage.kind == "inline":
            lines.append(f"    runs its {units} in the prepare job")
            previous = stage.name
            continue
        if stage.kind == "distributed":
            from jumpdenoise.executors.slurm import tasks_per_node

            tasks = tasks_per_node(prof)
            lines.append(f"    {stage.name}: {units}, each ONE job of {prof.nodes} node(s) x {tasks} task(s) "
                         f"(one per GPU) [{resources(prof, gpus=True, nodes=prof.nodes, tasks=tasks)}], "
                         f"requeued from its checkpoint up to {prof.max_num_timeout} time(s), afterok prepare")
        elif config.executor.kind == "dask" and not stage.gpus:
            lines.append(f"    {stage.name}: {units}, run on Dask by the prepare job"
                         + (" (dask-jobqueue workers as SLURM jobs)" if config.executor.dask_slurm else ""))
        else:
            arrays = "" if n is None else f" in {max(1, -(-n // prof.max_array_size))} array(s)"
            lines.append(f"    {stage.name}: {units}{arrays}, one array task per unit "
                         f"[{resources(prof, gpus=stage.gpus)}], at most {prof.array_parallelism} at once, "
                         "afterok prepare")
        lines.append(f"    {stage.name}-finalize: 1 job [{resources(control, gpus=False)}], afterok the units")
        previous = stage.name
    return lines


def submit_pipeline(config: JumpDenoiseConfig, *, dry_run: bool = False, until: str | None = None,
                    echo: Callable[[str], None] = print) -> dict:
    """Submit the pipeline to SLURM (or print the plan with ``dry_run``); does not wait.

    Stages already done in the run folder are skipped; the others are resubmitted, and
    their plan() skips units already done (resume after failures or cancellation).
    ``until`` stops the chain after that stage.

    Returns
    -------
    dict
        Stage name -> ``{"prepare": job id, "finalize": job id}`` (empty for a dry run).

    Raises
    ------
    ClusterError
        If jobs of an earlier submission of this run folder are still queued or running,
        or sbatch fails.
    """
    from jumpdenoise.config import load_profile
    from jumpdenoise.executors.slurm import SlurmExecutor, cancel_jobs
    from jumpdenoise.run_state import collect_status

    profile = load_profile(config.executor.profile)
    if dry_run:
        for line in plan_lines(config, profile, until):
            echo(line)
        echo("dry run: nothing submitted")
        return {}
    rf = _run_folder(config)
    if rf.state_file.is_file():
        active = collect_status(rf.workdir).active_jobs
        if active:
            raise ClusterError(f"{rf.workdir}: jobs {', '.join(active)} of an earlier submission are still "
                               f"queued or running; wait for them or run `jumpdenoise cancel {rf.workdir}`")
    rf.workdir.mkdir(parents=True, exist_ok=True)
    save_config(config, rf)
    ex = SlurmExecutor(profile, rf.log_dir)
    stages = pipeline_stages(config, until)
    jobs: dict[str, dict] = {}
    first: str | None = None
    dependency: list[str] | None = None
    try:
        for stage in stages:
            if rf.is_done(stage.name):
                echo(f"{stage.name}: already done, skipped")
                continue
            rf.reset_stage(stage.name)
            hold = {"hold": True} if first is None else {}
            # units run on Dask inside the prepare job: it gets the stage's resources
            on_dask = stage.kind == "array" and not stage.gpus and config.executor.kind == "dask"
            prep = ex.submit_one(job_prepare, stage.name, config, ex, name=f"{stage.name}-prepare",
                                 dependency=dependency, stage=stage.name if on_dask else "control", extra=hold)
            first = first or prep.job_id
            jobs[stage.name] = {"prepare": prep.job_id, "finalize": prep.job_id}
            fin = prep if stage.kind == "inline" else ex.submit_one(
                job_finalize, stage.name, config, name=f"{stage.name}-finalize", dependency=[prep.job_id],
                stage="control")
            jobs[stage.name]["finalize"] = fin.job_id
            dependency = [fin.job_id]
            echo(f"{stage.name}: prepare job {prep.job_id}, finalize job {fin.job_id}")
    except BaseException:  # a failed sbatch: leave no held half-chain behind
        cancel_jobs(j for ids in jobs.values() for j in ids.values())
        raise
    write_json(rf.state_file, {"version": 1, "executor": "slurm", "submitted_at": now(),
                               "config": str(rf.config_file), "log_dir": str(rf.log_dir),
                               "stages": [{"name": s.name} for s in stages], "jobs": jobs})
    if first is not None:  # the chain starts once the state file names every job
        subprocess.run(["scontrol", "release", first], check=False, capture_output=True, timeout=60)
        echo(f"submitted; follow it with: jumpdenoise status {rf.workdir}")
    else:
        echo("every stage is already done; nothing submitted")
    return jobs
