"""The pipeline on SLURM: submission, the jobs' own functions, and dry-run plans.

See :mod:`jumpdenoise.pipeline` for the shape of the job chain. The functions named
``job_*`` and :class:`UnitTask` run inside SLURM jobs (pickled by submitit by reference, so
the cluster needs jumpdenoise installed in the environment the profile's ``setup`` lines
activate).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from jumpdenoise.driver import (
    begin_stage, check_outputs, finish_stage, output_lock, record_outcomes, start_dask, stage_module,
)
from jumpdenoise.errors import ClusterError, UnitFailures
from jumpdenoise.io.output_lock import OutputLock
from jumpdenoise.pipeline import check_before_stage, check_workdir, pipeline_stages
from jumpdenoise.run_state import RunState, now, write_json
from jumpdenoise.stages.base import BY_NAME, Stage

if TYPE_CHECKING:
    from jumpdenoise.config import JumpDenoiseConfig, SlurmProfile
    from jumpdenoise.executors.base import Outcome
    from jumpdenoise.executors.slurm import SlurmExecutor


def _run_state(config: JumpDenoiseConfig) -> RunState:
    return RunState(Path(config.paths.workdir).absolute())


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
        from jumpdenoise.driver import jsonable
        from jumpdenoise.executors.base import error_text
        from jumpdenoise.executors.slurm import job_environment
        from jumpdenoise.stages.session import PlateSession

        stage = BY_NAME[self.stage]
        rs = _run_state(self.config)
        log, job_id = job_environment()
        rank = int(os.environ.get("SLURM_PROCID", "0"))
        try:
            with PlateSession(keeps_payloads=False) as session:  # this task's own; its result travels
                value = stage_module(stage).run_one(stage.request(self.config), unit, session)
        except Exception as exc:
            if rank == 0:
                rs.write_unit(stage.name, unit.key, ok=False, error=error_text(exc), log=log, job_id=job_id)
            raise
        if rank == 0:
            rs.write_unit(stage.name, unit.key, ok=True, value=jsonable(value), log=log, job_id=job_id)
        return value


def _units_on_dask(stage: Stage, config: JumpDenoiseConfig) -> bool:
    """Whether the prepare job runs the stage's units itself, on Dask (CPU array stages)."""
    return stage.kind == "array" and not stage.gpus and config.executor.kind == "dask"


def job_prepare(stage_name: str, config: JumpDenoiseConfig, executor: SlurmExecutor, token: str) -> dict:
    """The ``<stage>-prepare`` job: prepare, plan, submit the units, retarget finalize.

    Inline stages run completely here; with a Dask executor the units of CPU stages run
    here too (through the Dask cluster). The stage's output is locked with the run's
    ``token`` meanwhile. Returns ``{"units": n, "arrays": [...]}``.
    """
    import submitit

    from jumpdenoise.executors.slurm import base_id, dependency_string, update_dependency

    stage = BY_NAME[stage_name]
    rs = _run_state(config)
    request = stage.request(config)
    io = check_outputs(stage, request)
    check_before_stage(stage, config)
    with output_lock(io, token, stale_s=config.executor.lock_stale_s):
        _, units = begin_stage(stage, request, rs)
        if stage.kind == "inline" or (units and _units_on_dask(stage, config)):
            outcomes = _run_here(stage, config, request, units, rs)
            if stage.kind == "inline":
                finish_stage(stage, request, rs, outcomes)
            elif any(not o.ok for o in outcomes):
                from jumpdenoise.driver import failures_of

                raise UnitFailures(stage.name, failures_of(outcomes))
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
        for i, j in enumerate(jobs):
            b = base_id(j.job_id)
            if arrays and arrays[-1]["job_id"] == b:
                arrays[-1]["count"] += 1
            else:
                arrays.append({"job_id": b, "first": i, "count": 1, "array": "_" in j.job_id})
        rs.write_plan(stage.name, units, arrays)
        finalize_job = (rs.state().get("jobs", {}).get(stage.name) or {}).get("finalize")
        if arrays and finalize_job:
            update_dependency(finalize_job, dependency_string(a["job_id"] for a in arrays))
        return {"units": len(units), "arrays": arrays}


def _run_here(stage: Stage, config: JumpDenoiseConfig, request: Any, units: list, rs: RunState) -> list[Outcome]:
    from jumpdenoise.executors import make_executor
    from jumpdenoise.stages.base import bind

    ex = make_executor(config.executor, stage)
    try:
        if units:
            start_dask(ex, rs, remote=True)
        outcomes = ex.map(bind(stage.module, request), units, label=stage.name) if units else []
    finally:
        ex.close()
    record_outcomes(rs, stage, outcomes)
    return outcomes


def job_finalize(stage_name: str, config: JumpDenoiseConfig, token: str) -> Any:
    """The ``<stage>-finalize`` job: gather the recorded unit outcomes, finalize, mark done."""
    from jumpdenoise.executors.base import Outcome

    stage = BY_NAME[stage_name]
    rs = _run_state(config)
    request = stage.request(config)
    plan = rs.plan(stage.name) or {"units": []}
    outcomes = []
    for u in plan["units"]:
        rec = rs.unit(stage.name, u["key"]) or {}
        outcomes.append(Outcome(u["key"], bool(rec.get("ok")), value=rec.get("value"),
                                error=rec.get("error") or ("no result recorded" if not rec else None),
                                log=rec.get("log")))
    with output_lock(stage.io(request), token, stale_s=config.executor.lock_stale_s):
        return finish_stage(stage, request, rs, outcomes)


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
        return len(stage_module(stage).plan(stage.request(config)))
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
    rs = _run_state(config)
    lines = [f"run folder: {rs.workdir}", f"job logs:   {rs.log_dir}"]
    control = profile.for_stage("control")
    previous = None
    for stage in pipeline_stages(config, until):
        if rs.is_done(stage.name):
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
        elif _units_on_dask(stage, config):
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


def check_submission(config: JumpDenoiseConfig, stages: list[Stage], *, dry_run: bool,
                     echo: Callable[[str], None] = print) -> list[str]:
    """The values of a submission that would only fail inside a running job (one line per problem,
    each naming its dotted field; :mod:`jumpdenoise.submit_checks`).

    Without SLURM on this machine a dry run checks the configuration alone and says so.

    Raises
    ------
    ClusterError
        When the cluster cannot be asked (``sinfo`` missing or failing) and this is no dry run.
    """
    from jumpdenoise.submit_checks import submission_problems

    try:
        return submission_problems(config, stages)
    except ClusterError as exc:
        if not dry_run:
            raise
        echo(f"cluster not checked ({exc})")
        return submission_problems(config, stages, cluster={}, known_options=set())


def _refuse(problems: list[str]) -> None:
    """Raise the problems as one :class:`ConfigError`, one ``error:`` line each."""
    from jumpdenoise.errors import ConfigError

    if problems:
        raise ConfigError("\nerror: ".join(problems))


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
    ConfigError
        Listing every value that would only fail inside a running job (checked before anything
        is submitted; a dry run prints its plan first).
    ClusterError
        If jobs of an earlier submission of this run folder are still queued or running,
        or sbatch fails.
    """
    from jumpdenoise.config import load_profile
    from jumpdenoise.executors.slurm import SlurmExecutor, cancel_jobs, release_job
    from jumpdenoise.run_state import collect_status

    profile = load_profile(config.executor.profile)
    check_workdir(config)
    stages = pipeline_stages(config, until)
    for stage in stages:  # refuse an unsafe output now, not in a job an hour later
        check_outputs(stage, stage.request(config))
    problems = check_submission(config, [s for s in stages if not _run_state(config).is_done(s.name)],
                                dry_run=dry_run, echo=echo)
    if dry_run:
        for line in plan_lines(config, profile, until):
            echo(line)
        _refuse(problems)  # after the plan, which shows where they are
        echo("dry run: nothing submitted")
        return {}
    _refuse(problems)
    rs = _run_state(config)
    if rs.state_file.is_file():
        active = collect_status(rs.workdir).active_jobs
        if active:
            raise ClusterError(f"{rs.workdir}: jobs {', '.join(active)} of an earlier submission are still "
                               f"queued or running; wait for them or run `jumpdenoise cancel {rs.workdir}`")
    token = uuid.uuid4().hex  # the jobs of this submission share the locks of its outputs
    with OutputLock(rs.workdir, token=token, stale_s=config.executor.lock_stale_s):
        # refuses while a local `jumpdenoise run` works in this run folder
        rs.workdir.mkdir(parents=True, exist_ok=True)
        rs.save_config(config)
    ex = SlurmExecutor(profile, rs.log_dir)
    jobs: dict[str, dict] = {}
    first: str | None = None
    dependency: list[str] | None = None
    try:
        for stage in stages:
            if rs.is_done(stage.name):
                echo(f"{stage.name}: already done, skipped")
                continue
            rs.reset_stage(stage.name)
            hold = {"hold": True} if first is None else {}
            # units run on Dask inside the prepare job: it gets the stage's resources
            resources = stage.name if _units_on_dask(stage, config) else "control"
            prep = ex.submit_one(job_prepare, stage.name, config, ex, token, name=f"{stage.name}-prepare",
                                 dependency=dependency, stage=resources, extra=hold)
            first = first or prep.job_id
            jobs[stage.name] = {"prepare": prep.job_id, "finalize": prep.job_id}
            fin = prep if stage.kind == "inline" else ex.submit_one(
                job_finalize, stage.name, config, token, name=f"{stage.name}-finalize", dependency=[prep.job_id],
                stage="control")
            jobs[stage.name]["finalize"] = fin.job_id
            dependency = [fin.job_id]
            echo(f"{stage.name}: prepare job {prep.job_id}, finalize job {fin.job_id}")
    except BaseException:  # a failed sbatch: leave no held half-chain behind
        cancel_jobs(j for ids in jobs.values() for j in ids.values())
        raise
    write_json(rs.state_file, {"version": 1, "executor": "slurm", "submitted_at": now(),
                               "config": str(rs.config_file), "log_dir": str(rs.log_dir),
                               "stages": [{"name": s.name} for s in stages], "jobs": jobs})
    if first is not None:  # the chain starts once the state file names every job
        release_job(first)
        echo(f"submitted; follow it with: jumpdenoise status {rs.workdir}")
    else:
        echo("every stage is already done; nothing submitted")
    return jobs
