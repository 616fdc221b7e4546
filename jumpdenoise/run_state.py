"""The run state of a pipeline, kept in its run folder (``config.paths.workdir``).

Each file has ONE writer, so that jobs running on different nodes never write the same file::

    WORKDIR/pipeline_state.json          the submitter (``run``/``submit``): executor, log folder,
                                         per stage the ids of its prepare and finalize jobs
    WORKDIR/.pipeline/config.yaml        the resolved configuration of the last run/submit
    WORKDIR/.pipeline/<stage>/plan.json  the stage's prepare step: its units, array job ids
    WORKDIR/.pipeline/<stage>/units/<key>.json   the unit's task: ok, error, log path, value
    WORKDIR/.pipeline/<stage>/done.json  the stage's finalize step, after it succeeded
    WORKDIR/.pipeline/logs/              submitit's job logs (``<job>_<task>_log.err``...)
    WORKDIR/dask_dashboard.txt           the Dask dashboard link and the ``ssh -L`` line

:func:`collect_status` merges them with the job states (one ``sacct`` call for all jobs).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "pipeline_state.json"
STATE_DIR = ".pipeline"


def now() -> str:
    """The current UTC time, ISO 8601 (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, default=str)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The JSON content of ``path`` or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class RunState:
    """The run state of a pipeline inside its run folder ``workdir``: paths, writers, readers.

    It is the recorder of :func:`jumpdenoise.driver.run_stage` for the pipeline (the
    training's own run folder is :class:`jumpdenoise.train.run_folder.RunFolder`).
    """

    workdir: Path

    @property
    def state_file(self) -> Path:
        return self.workdir / STATE_FILE

    @property
    def root(self) -> Path:
        return self.workdir / STATE_DIR

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def dashboard_file(self) -> Path:
        return self.workdir / "dask_dashboard.txt"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def plan_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / "plan.json"

    def done_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / "done.json"

    def unit_file(self, stage: str, key: str) -> Path:
        return self.stage_dir(stage) / "units" / f"{key}.json"

    # -- writers ----------------------------------------------------------------------
    def reset_stage(self, stage: str) -> None:
        """Forget the plan and completion of ``stage`` (unit records of earlier runs stay)."""
        for p in (self.plan_file(stage), self.done_file(stage)):
            p.unlink(missing_ok=True)

    def write_plan(self, stage: str, units: list[Any], arrays: list[dict] | None = None) -> None:
        """Record the units planned for ``stage`` (and, on SLURM, the arrays running them)."""
        write_json(self.plan_file(stage), {
            "stage": stage, "planned_at": now(),
            "units": [{"key": u.key, "items": list(u.items)} for u in units],
            "arrays": arrays or [],
        })

    def write_unit(self, stage: str, key: str, *, ok: bool, value: Any = None, error: str | None = None,
                   log: str | None = None, job_id: str | None = None) -> None:
        """Record the outcome of one unit (written by the process that ran it)."""
        write_json(self.unit_file(stage, key), {
            "key": key, "ok": ok, "value": value, "error": error, "log": log,
            "job_id": job_id, "finished_at": now(),
        })

    def write_done(self, stage: str, summary: Any = None) -> None:
        """Record that ``stage`` finalized."""
        write_json(self.done_file(stage), {"stage": stage, "finished_at": now(), "summary": summary})

    def write_dashboard(self, link: str, *, remote: bool) -> None:
        """Write the Dask dashboard link (and, for a scheduler on a compute node, the ``ssh -L`` line)
        into :attr:`dashboard_file`."""
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
        self.dashboard_file.parent.mkdir(parents=True, exist_ok=True)
        self.dashboard_file.write_text("\n".join(lines) + "\n")

    def save_config(self, config: Any) -> Path:
        """Write the resolved configuration (a pydantic model) into :attr:`config_file`."""
        import yaml

        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        return self.config_file

    # -- readers ----------------------------------------------------------------------
    def state(self) -> dict:
        data = read_json(self.state_file)
        return data if isinstance(data, dict) else {}

    def plan(self, stage: str) -> dict | None:
        return read_json(self.plan_file(stage))

    def unit(self, stage: str, key: str) -> dict | None:
        return read_json(self.unit_file(stage, key))

    def is_done(self, stage: str) -> bool:
        return self.done_file(stage).is_file()


@dataclass
class UnitStatus:
    """State of one unit: ``done``, ``failed``, ``running``, ``pending`` or ``not run``."""

    key: str
    state: str
    job_id: str | None = None
    log: str | None = None
    error: str | None = None


@dataclass
class StageStatus:
    """State of one stage and its units."""

    name: str
    state: str
    units: list[UnitStatus] = field(default_factory=list)
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> sacct state
    notes: list[str] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(u.state == state for u in self.units)

    @property
    def failed(self) -> list[UnitStatus]:
        return [u for u in self.units if u.state == "failed"]


@dataclass
class RunStatus:
    """State of a whole run (see :func:`collect_status`)."""

    workdir: Path
    executor: str
    stages: list[StageStatus]

    @property
    def active_jobs(self) -> list[str]:
        from jumpdenoise.executors.slurm import ACTIVE_STATES

        return sorted({j for s in self.stages for j, st in s.jobs.items() if st in ACTIVE_STATES})

    @property
    def done(self) -> bool:
        return bool(self.stages) and all(s.state == "done" for s in self.stages)


# ----------------------------------------------------------------------------- status

_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT"}


def _task_log(log_dir: str | None, job_id: str) -> str | None:
    if not log_dir:
        return None
    from submitit.core.utils import JobPaths

    return str(JobPaths(Path(log_dir), job_id=job_id, task_id=0).stderr)


def _job_failure(kind: str, job_id: str, state: str, log: str | None) -> str:
    from jumpdenoise.executors.slurm import tail

    text = tail(log)
    return f"{kind} job {job_id} {state}" + (f" (log {log})" if log else "") + (f":\n{text}" if text else "")


def collect_status(workdir: str | Path) -> RunStatus:
    """Per stage: state, units (done/failed/running/pending), job states and failure logs.

    One ``sacct`` call covers every job of the run (SLURM runs); a unit's own record wins
    over its task's state, except records older than the stage's latest plan.

    Raises
    ------
    ConfigError
        If ``workdir`` holds no ``pipeline_state.json``.
    """
    from jumpdenoise.errors import ConfigError
    from jumpdenoise.executors.slurm import ACTIVE_STATES, poll_states

    rf = RunState(Path(workdir).absolute())
    st = rf.state()
    if not st:
        raise ConfigError(f"{rf.workdir}: no {STATE_FILE}; not a pipeline run folder "
                          "(made by `jumpdenoise run` or `jumpdenoise submit`)")
    slurm = st.get("executor") == "slurm"
    jobs: dict = st.get("jobs") or {}
    names = [s["name"] for s in st.get("stages", [])]
    plans = {n: rf.plan(n) for n in names}
    ids = [j for n in names for j in (jobs.get(n) or {}).values()]
    ids += [a["job_id"] for p in plans.values() if p for a in p.get("arrays", [])]
    states = poll_states(ids) if slurm and ids else {}
    log_dir = st.get("log_dir")
    stages = []
    for name in names:
        plan, control = plans[name], jobs.get(name) or {}
        stage = StageStatus(name, "not started")
        task_of: dict[int, str] = {}
        for arr in (plan or {}).get("arrays", []):
            for k in range(arr["count"]):
                task_of[arr["first"] + k] = f"{arr['job_id']}_{k}" if arr.get("array", True) else arr["job_id"]
        for i, u in enumerate((plan or {}).get("units", [])):
            stage.units.append(_unit_status(rf, name, u["key"], plan, task_of.get(i), states, log_dir))
        for job_id in set(control.values()) | {t for t in task_of.values()}:
            stage.jobs[job_id] = states.get(job_id, "UNKNOWN")
        for kind in ("prepare", "finalize"):
            job_id = control.get(kind)
            state = states.get(job_id or "", "")
            if job_id and state and state not in ACTIVE_STATES and state not in ("COMPLETED", "CANCELLED"):
                if kind == "finalize" and job_id == control.get("prepare"):
                    continue
                stage.notes.append(_job_failure(kind, job_id, state, _task_log(log_dir, job_id)))
        stage.state = _stage_state(rf, name, stage, plan, control, states)
        stages.append(stage)
    return RunStatus(rf.workdir, st.get("executor", "?"), stages)


def _unit_status(rf: RunState, stage: str, key: str, plan: dict, task: str | None, states: dict,
                 log_dir: str | None) -> UnitStatus:
    from jumpdenoise.executors.slurm import ACTIVE_STATES, tail

    rec = rf.unit(stage, key)
    if rec and rec.get("finished_at", "") < plan.get("planned_at", ""):
        rec = None  # a record of an earlier submission
    if rec:
        return UnitStatus(key, "done" if rec.get("ok") else "failed", rec.get("job_id") or task,
                          rec.get("log"), rec.get("error"))
    if task is None:
        return UnitStatus(key, "not run")
    state = states.get(task, "PENDING")
    log = _task_log(log_dir, task)
    if state == "PENDING":
        return UnitStatus(key, "pending", task, log)
    if state in _RUNNING or state in ACTIVE_STATES:
        return UnitStatus(key, "running", task, log)
    if state == "COMPLETED":
        return UnitStatus(key, "done", task, log)
    text = tail(log)
    return UnitStatus(key, "failed", task, log, f"task {task} {state}" + (f":\n{text}" if text else ""))


def _stage_state(rf: RunState, name: str, stage: StageStatus, plan: dict | None, control: dict,
                 states: dict) -> str:
    from jumpdenoise.executors.slurm import ACTIVE_STATES

    if rf.is_done(name):
        return "done"
    job_states = [states.get(j, "UNKNOWN") for j in stage.jobs]
    if any(s in _RUNNING for s in job_states) or stage.count("running"):
        return "running"
    if stage.failed or stage.notes:
        return "failed"
    if any(s in ACTIVE_STATES for s in job_states) or stage.count("pending"):  # UNKNOWN: not in sacct yet
        return "pending"
    if any(states.get(j) == "CANCELLED" for j in list(control.values()) + list(stage.jobs)):
        return "cancelled"
    return "incomplete" if plan else "not started"


def format_status(status: RunStatus, error_lines: int = 8) -> str:
    """Human-readable status: one line per stage, then each failed unit with log and error."""
    lines = [f"run {status.workdir} ({status.executor})"]
    for s in status.stages:
        counts = ", ".join(f"{s.count(k)} {k}" for k in ("done", "running", "pending", "failed", "not run")
                           if s.count(k))
        jobs = f"  jobs {' '.join(sorted(s.jobs, key=lambda j: (len(j), j)))}" if s.jobs else ""
        lines.append(f"  {s.name:<15} {s.state:<12} {len(s.units)} unit(s){': ' + counts if counts else ''}{jobs}")
    for s in status.stages:
        for u in s.failed:
            lines.append(f"FAILED {s.name} unit {u.key}" + (f" (job {u.job_id})" if u.job_id else ""))
            if u.log:
                lines.append(f"  log: {u.log}")
            for ln in (u.error or "").splitlines()[-error_lines:]:
                lines.append(f"  | {ln}")
        for note in s.notes:
            head, *rest = note.splitlines()
            lines.append(f"FAILED {s.name} {head}")
            lines += [f"  | {ln}" for ln in rest[-error_lines:]]
    if status.active_jobs:
        lines.append(f"{len(status.active_jobs)} job(s) queued or running")
    elif status.done:
        lines.append("all stages done")
    return "\n".join(lines)


def cancel_run(workdir: str | Path) -> list[str]:
    """``scancel`` every queued or running job of the run; returns their ids."""
    from jumpdenoise.executors.slurm import cancel_jobs

    active = collect_status(workdir).active_jobs
    return cancel_jobs(active)
