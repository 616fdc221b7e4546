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
class RunFolder:
    """Paths of the run state inside ``workdir``."""

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
