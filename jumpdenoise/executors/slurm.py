"""SLURM executor: units as submitit job arrays, stages chained with ``afterok`` dependencies.

:class:`SlurmExecutor` has two faces:

- :meth:`SlurmExecutor.map` (the :class:`~jumpdenoise.executors.base.Executor` contract):
  submits one array task per unit, waits, and returns one :class:`Outcome` per unit with the
  task's log path and, on failure, the last lines of its error;
- non-blocking submission for the pipeline: :meth:`submit_stage` (arrays, split at
  ``max_array_size``), :meth:`submit_one` (a small single job) and :meth:`submit_distributed`
  (the multi-GPU training job: ``nodes x gpus_per_node`` tasks started by ``srun``, one per
  GPU, requeued from its checkpoint on time limit or preemption), each taking ``dependency``:
  job ids that must end successfully first (``--dependency=afterok:...``).

States are polled in batches: one ``sacct`` call for all the jobs waited on (never one call
per job), at most every ``profile.poll_s`` seconds.

Lightning inside submitit
-------------------------
Jobs started here have ``SUBMITIT_EXECUTOR=slurm`` (set by submitit) and
``JUMPDENOISE_SUBMITIT=1`` in their environment. Training code must then switch Lightning's
own SLURM auto-requeue off (``plugins=[SLURMEnvironment(auto_requeue=False)]``): submitit
handles the time-limit signal (``checkpoint()`` + requeue) and two handlers fight otherwise.
The processes are started by ``srun`` (never ``torchrun``): Lightning reads
``SLURM_NTASKS``/``SLURM_PROCID``.

The ``scontrol`` calls of the pipeline (retargeting a dependency, releasing a held job) are
here too (:func:`update_dependency`, :func:`release_job`): submitit's Job API has neither.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import submitit
from submitit.helpers import Checkpointable
from submitit.slurm.slurm import SlurmInfoWatcher

from jumpdenoise.config.executor import SlurmProfile
from jumpdenoise.errors import ClusterError
from jumpdenoise.executors.base import Executor, Outcome
from jumpdenoise.progress import progress_bar

#: States after which a job will not run again (submitit and Slurm names).
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "RESIZING",
                 "SUSPENDED", "PREEMPTED", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT",
                 "UNKNOWN"}
ENV_FLAG = "JUMPDENOISE_SUBMITIT"
ERROR_LINES = 12


def base_id(job_id: str) -> str:
    """The array (or plain) job id of ``"123_4"`` -> ``"123"``."""
    return str(job_id).split("_", 1)[0]


def dependency_string(job_ids: Iterable[str] | None) -> str | None:
    """``--dependency`` value requiring all ``job_ids`` (arrays: every task) to succeed."""
    ids = sorted({base_id(j) for j in job_ids or []}, key=lambda s: (len(s), s))
    return f"afterok:{':'.join(ids)}" if ids else None


def tasks_per_node(profile: SlurmProfile) -> int:
    """Processes per node of the training job: ``profile.tasks_per_node``, else one per GPU (at least 1)."""
    return profile.tasks_per_node or max(1, profile.gpus_per_node)


def poll_states(job_ids: Iterable[str]) -> dict[str, str]:
    """States of ``job_ids`` (``"123"`` or ``"123_4"``) from ONE ``sacct`` call.

    Returns
    -------
    dict
        Job id -> first word of the Slurm state (``"COMPLETED"``, ``"CANCELLED"``...);
        array ids are expanded to their tasks; ids sacct does not know yet are absent.
    """
    bases = sorted({base_id(j) for j in job_ids})
    if not bases:
        return {}
    cmd = ["sacct", "-X", "--parsable2", "-o", "JobID,State,ExitCode", "-j", ",".join(bases)]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise ClusterError(f"sacct failed ({' '.join(cmd[:6])} ...): {exc}") from exc
    info = SlurmInfoWatcher().read_info(out)
    return {jid: (stats.get("State") or "UNKNOWN").split()[0] for jid, stats in info.items()}


def cancel_jobs(job_ids: Iterable[str]) -> list[str]:
    """``scancel`` the given jobs in one call; returns the ids that were passed."""
    ids = sorted({str(j) for j in job_ids})
    if ids:
        subprocess.run(["scancel", *ids], check=False, capture_output=True, text=True, timeout=60)
    return ids


def update_dependency(job_id: str, dependency: str | None) -> None:
    """Set the dependency of a queued job (``scontrol update JobId=... Dependency=...``).

    Raises
    ------
    ClusterError
        When scontrol refuses (the message is scontrol's).
    """
    cmd = ["scontrol", "update", f"JobId={job_id}", f"Dependency={dependency or ''}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed: {res.stderr.strip() or res.stdout.strip()}")


def release_job(job_id: str) -> None:
    """Release a job submitted with ``--hold`` (``scontrol release``)."""
    subprocess.run(["scontrol", "release", str(job_id)], check=False, capture_output=True, timeout=60)


def job_environment() -> tuple[str | None, str | None]:
    """The log path and job id of the submitit job this process runs in, or ``(None, None)``."""
    try:
        env = submitit.JobEnvironment()
        return str(env.paths.stderr), env.job_id
    except RuntimeError:  # not in a submitit job (tests calling a job function directly)
        return None, None


def tail(path: str | Path | None, lines: int = ERROR_LINES) -> str:
    """Last ``lines`` non-empty lines of a text file ('' when missing)."""
    if path is None or not Path(path).is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64 * 1024))
        text = fh.read().decode("utf-8", errors="replace")
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


class ResumableJob(Checkpointable):
    """Wrap ``fn`` so that submitit requeues the job on time limit or preemption.

    ``fn`` must resume by itself (training restarts from ``last.ckpt``): submitit's
    ``checkpoint()`` resubmits the same call, which runs ``fn`` again with the same arguments.
    Without a ``checkpoint()`` method submitit would not requeue a timed-out job at all.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


class SlurmExecutor(Executor):
    """Run units as SLURM jobs through submitit.

    Parameters
    ----------
    profile
        Cluster resources (see :class:`~jumpdenoise.config.executor.SlurmProfile`).
    log_dir
        Folder of submitit's pickles and the job logs (``<job>_<task>_log.err``...).
    stage
        Profile overrides to apply (``profile.stages[stage]``) for :meth:`map`.
    gpus
        Whether :meth:`map` jobs ask for ``profile.gpus_per_node`` GPUs (CPU stages do not).
    """

    name = "slurm"

    def __init__(self, profile: SlurmProfile | None = None, log_dir: str | Path = "jumpdenoise-slurm-logs",
                 *, stage: str | None = None, gpus: bool = False) -> None:
        self.profile = profile or SlurmProfile()
        self.log_dir = Path(log_dir).absolute()
        self.stage = stage
        self.gpus = gpus

    # -- submission -------------------------------------------------------------------
    def _executor(self, prof: SlurmProfile, *, name: str, dependency: Sequence[str] | None,
                  gpus: int, nodes: int = 1, tasks_per_node: int = 1, extra: dict | None = None) -> Any:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            ex = submitit.AutoExecutor(folder=self.log_dir, cluster="slurm",
                                       slurm_max_num_timeout=prof.max_num_timeout)
        except RuntimeError as exc:  # submitit: 'Could not detect "srun"'
            raise ClusterError(f"SLURM is not available here ({exc}); submit from a login node of the cluster, "
                               "or use executor.kind local/dask with `jumpdenoise run`") from exc
        additional: dict[str, Any] = {str(k): v for k, v in {**prof.extra, **(extra or {})}.items()}
        dep = dependency_string(dependency)
        if dep:
            additional["dependency"] = dep
        params: dict[str, Any] = dict(
            name=name, timeout_min=prof.time_min, mem_gb=prof.mem_gb, cpus_per_task=prof.cpus_per_task,
            nodes=nodes, tasks_per_node=tasks_per_node,
            slurm_array_parallelism=prof.array_parallelism,
            slurm_signal_delay_s=prof.signal_delay_s,
            slurm_setup=[f"export {ENV_FLAG}=1", *prof.setup],
            slurm_additional_parameters=additional,
        )
        if gpus > 0:
            params["gpus_per_node"] = gpus
        for key in ("partition", "account", "qos", "constraint"):
            value = getattr(prof, key)
            if value:
                params[f"slurm_{key}"] = value
        ex.update_parameters(**params)
        return ex

    def _profile(self, stage: str | None) -> SlurmProfile:
        return self.profile.for_stage(stage) if stage else self.profile

    def submit_stage(self, fn: Callable[[Any], Any], units: Sequence[Any], *, name: str,
                     dependency: Sequence[str] | None = None, stage: str | None = None,
                     gpus: bool = False) -> list[Any]:
        """Submit ``fn(unit)`` for every unit as job arrays, without waiting.

        Parameters
        ----------
        fn
            Picklable callable of one unit.
        units
            The units; arrays hold at most ``profile.max_array_size`` tasks each.
        name
            Job name.
        dependency
            Job ids that must all succeed first (``afterok``).
        stage
            Profile overrides to apply (``profile.stages[stage]``).
        gpus
            Ask for ``gpus_per_node`` GPUs per task.

        Returns
        -------
        list
            One ``submitit.Job`` per unit, in order (``job.job_id`` is ``"<array>_<index>"``).
        """
        prof = self._profile(stage)
        ex = self._executor(prof, name=name, dependency=dependency, gpus=prof.gpus_per_node if gpus else 0)
        jobs: list[Any] = []
        size = prof.max_array_size
        for start in range(0, len(units), size):
            chunk = list(units[start:start + size])
            try:
                jobs.extend(ex.map_array(fn, chunk))
            except Exception as exc:  # submitit.core.utils.FailedJobError / FailedSubmissionError
                raise ClusterError(f"sbatch of {name} ({len(chunk)} tasks) failed: {exc}") from exc
        return jobs

    def submit_one(self, fn: Callable[..., Any], *args: Any, name: str, dependency: Sequence[str] | None = None,
                   stage: str | None = None, gpus: bool = False, extra: dict | None = None) -> Any:
        """Submit ``fn(*args)`` as one single-task job, without waiting; returns the job.

        ``extra`` adds sbatch options for this job only (e.g. ``{"hold": True}``).
        """
        prof = self._profile(stage)
        ex = self._executor(prof, name=name, dependency=dependency, gpus=prof.gpus_per_node if gpus else 0,
                            extra=extra)
        try:
            return ex.submit(fn, *args)
        except Exception as exc:
            raise ClusterError(f"sbatch of {name} failed: {exc}") from exc

    def submit_distributed(self, fn: Callable[..., Any], *args: Any, name: str,
                           dependency: Sequence[str] | None = None, stage: str | None = "train") -> Any:
        """Submit ``fn(*args)`` as ONE multi-node, multi-GPU job (training).

        ``profile.nodes`` nodes x ``profile.gpus_per_node`` GPUs, one task per GPU
        (``--ntasks-per-node == --gpus-per-node``; :func:`tasks_per_node`), all started by
        ``srun``; ``fn`` runs in every task and must resume from its own checkpoint: the job
        is requeued (``profile.max_num_timeout`` times on time limit, always on preemption).
        """
        prof = self._profile(stage)
        gpus = prof.gpus_per_node
        ex = self._executor(prof, name=name, dependency=dependency, gpus=gpus,
                            nodes=prof.nodes, tasks_per_node=tasks_per_node(prof))
        try:
            return ex.submit(ResumableJob(fn), *args)
        except Exception as exc:
            raise ClusterError(f"sbatch of {name} failed: {exc}") from exc

    # -- waiting ----------------------------------------------------------------------
    def wait(self, jobs: Sequence[Any], keys: Sequence[str], *, label: str = "jobs") -> list[Outcome]:
        """Wait for ``jobs`` (one per key) and return their outcomes, in order.

        States come from one ``sacct`` call per poll for all jobs; a job that ends without a
        result (cancelled, timed out, killed for memory) fails with its state and log tail.
        """
        outcomes: dict[int, Outcome] = {}
        pending = deque(range(len(jobs)))
        delay = 1.0
        ended_at: dict[int, float] = {}
        with progress_bar(len(jobs), label) as advance:
            while pending:
                states = poll_states(jobs[i].job_id for i in pending)
                still: deque[int] = deque()
                for i in pending:
                    out = _outcome(jobs[i], keys[i], states.get(jobs[i].job_id, "UNKNOWN"), ended_at, i)
                    if out is None:
                        still.append(i)
                    else:
                        outcomes[i] = out
                        advance()
                pending = still
                if pending:
                    time.sleep(delay)
                    delay = min(self.profile.poll_s, delay * 1.5)
        return [outcomes[i] for i in range(len(jobs))]

    def map(self, fn: Callable[[Any], Any], units: Sequence[Any], *, label: str = "") -> list[Outcome]:
        """Run ``fn`` over ``units`` as job arrays and wait; see :meth:`Executor.map`.

        The profile overrides are those of the executor's ``stage`` (else the units' own
        ``stage``); tasks ask for the profile's GPUs when the executor was made with ``gpus``
        (:func:`~jumpdenoise.executors.make_executor` sets both from the stage's record).
        """
        if not units:
            return []
        stage = self.stage or getattr(units[0], "stage", None)
        jobs = self.submit_stage(fn, units, name=label or "jumpdenoise", stage=stage, gpus=self.gpus)
        try:
            return self.wait(jobs, [u.key for u in units], label=label or "units")
        except KeyboardInterrupt:
            cancel_jobs(base_id(j.job_id) for j in jobs)
            raise


def _outcome(job: Any, key: str, state: str, ended_at: dict[int, float], index: int) -> Outcome | None:
    """The outcome of a finished job, or None while it may still produce one.

    A multi-task job (distributed training) succeeds when every task wrote a success
    result; its value is task 0's. The first task's error is reported otherwise.
    """
    tasks = [job.task(t) for t in range(job.num_tasks)]
    log = str(tasks[0].paths.stderr)
    extra = {"job_id": job.job_id, "state": state, "stdout": str(tasks[0].paths.stdout)}
    results = []
    for task in tasks:
        path = task.paths.result_pickle
        if not path.exists():
            results.append(None)
            continue
        try:
            results.append(_load_result(path))
        except Exception as exc:  # noqa: BLE001 - half-written pickle: look again next poll
            results.append(("error", f"unreadable result {path}: {exc}"))
    for task, res in zip(tasks, results):
        if res is not None and res[0] != "success":
            extra["state"] = state if state not in ACTIVE_STATES else "FAILED"
            lines = str(res[1]).rstrip().splitlines()
            return Outcome(key, False, error="\n".join(lines[-ERROR_LINES:]), log=str(task.paths.stderr), extra=extra)
    if all(res is not None for res in results):
        extra["state"] = state if state not in ACTIVE_STATES else "COMPLETED"
        return Outcome(key, True, value=results[0][1], log=log, extra=extra)
    if state in ACTIVE_STATES:
        return None
    # ended without a result: give a shared file system a few seconds to show it
    first = ended_at.setdefault(index, time.monotonic())
    if state == "COMPLETED" and time.monotonic() - first < 10:
        return None
    text = tail(log) or tail(tasks[0].paths.stdout)
    error = f"job {job.job_id} ended {state} without a result" + (f":\n{text}" if text else "")
    return Outcome(key, False, error=error, log=log, extra=extra)


def _load_result(path: Path) -> tuple[str, Any]:
    from submitit.core.utils import pickle_load

    return pickle_load(path)
