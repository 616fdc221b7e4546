"""Configuration of where units run: locally, on Dask, or on SLURM through submitit."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SlurmResources(BaseModel):
    """Per-stage overrides of a :class:`SlurmProfile` (every field optional).

    Example: ``stages: {train: {partition: gpu, gpus_per_node: 4, nodes: 2, time_min: 720}}``.
    """

    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time_min: int | None = Field(default=None, ge=1)
    mem_gb: float | None = Field(default=None, gt=0)
    cpus_per_task: int | None = Field(default=None, ge=1)
    gpus_per_node: int | None = Field(default=None, ge=0)
    nodes: int | None = Field(default=None, ge=1)
    tasks_per_node: int | None = Field(default=None, ge=1)
    setup: list[str] | None = None
    extra: dict[str, object] | None = None


class SlurmProfile(BaseModel):
    """Resources and setup of a SLURM cluster (one YAML profile in ``slurm/profiles/``).

    Attributes
    ----------
    partition, account, qos, constraint
        Passed to sbatch when set.
    time_min
        Wall time per job in minutes.
    mem_gb
        Memory per node in GB.
    cpus_per_task
        CPUs per task.
    gpus_per_node
        GPUs per node for GPU stages (training, prediction); CPU stages ask for none.
    nodes
        Nodes of the multi-GPU training job (one task per GPU on each node).
    tasks_per_node
        Tasks (processes) per node of the training job; default ``gpus_per_node`` (one per
        GPU), or 1 without GPUs. Set it for CPU-only DDP (e.g. 2 on the test cluster).
    setup
        Shell lines run before the job (module loads, environment activation).
    max_array_size
        Largest array the cluster accepts (``MaxArraySize`` - 1); bigger arrays are split.
    array_parallelism
        How many tasks of one array may run at once (``--array=...%N``).
    signal_delay_s
        Seconds before the time limit at which submitit signals the job (checkpoint, requeue).
    max_num_timeout
        How many times a checkpointable job (training) is requeued after hitting its time limit.
    poll_s
        Longest wait between two ``sacct`` calls while waiting for jobs (one call for all jobs).
    extra
        Other sbatch options, without the leading dashes (``{"mail-type": "END"}``).
    stages
        Overrides per stage name (``convert``, ``stats``, ``train``, ``predict``,
        ``stats_denoised``, ``report``, and ``control`` for the small prepare/finalize jobs).
    """

    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time_min: int = Field(default=60, ge=1)
    mem_gb: float = Field(default=8, gt=0)
    cpus_per_task: int = Field(default=2, ge=1)
    gpus_per_node: int = Field(default=0, ge=0)
    nodes: int = Field(default=1, ge=1)
    tasks_per_node: int | None = Field(default=None, ge=1)
    setup: list[str] = Field(default_factory=list)
    max_array_size: int = Field(default=1000, ge=1)
    array_parallelism: int = Field(default=64, ge=1)
    signal_delay_s: int = Field(default=120, ge=0)
    max_num_timeout: int = Field(default=3, ge=0)
    poll_s: float = Field(default=30, gt=0)
    extra: dict[str, object] = Field(default_factory=dict)
    stages: dict[str, SlurmResources] = Field(default_factory=dict)

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: dict[str, SlurmResources]) -> dict[str, SlurmResources]:
        """Refuse a stage name no stage has (a typo would silently be ignored)."""
        from jumpdenoise.stages.base import BY_NAME

        known = sorted({*BY_NAME, "control"})
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown stage name(s) {', '.join(map(repr, unknown))} "
                             f"(stages: {', '.join(known)})")
        return value

    def for_stage(self, stage: str) -> "SlurmProfile":
        """This profile with the overrides of ``stage`` applied (``stages`` emptied).

        Examples
        --------
        >>> p = SlurmProfile(time_min=30, stages={"train": SlurmResources(time_min=600)})
        >>> p.for_stage("train").time_min, p.for_stage("convert").time_min
        (600, 30)
        """
        over = self.stages.get(stage)
        data = self.model_dump(exclude={"stages"})
        if over is not None:
            data.update(over.model_dump(exclude_none=True))
        return SlurmProfile.model_validate(data)


class ExecutorConfig(BaseModel):
    """Which executor runs the units.

    Attributes
    ----------
    kind
        ``"local"`` (process pool), ``"dask"`` (LocalCluster, a scheduler address, or a
        dask-jobqueue SLURMCluster) or ``"slurm"`` (submitit job arrays).
    workers
        Local processes / Dask workers.
    threads_per_worker
        Dask threads per worker.
    scheduler_address
        Connect to this running Dask scheduler instead of starting one.
    dask_slurm
        Start Dask workers as SLURM jobs (dask-jobqueue) using ``profile``; each job runs
        one worker of ``threads_per_worker`` threads, retired before the profile's wall time.
    dask_interface
        Network interface of the Dask scheduler and workers (e.g. ``"lo"`` on the
        single-node test cluster, ``"ib0"`` for InfiniBand); ``None`` lets Dask choose.
    dask_window
        Units in flight per Dask worker (memory stays bounded: no more than
        ``workers * dask_window`` units are submitted at once).
    profile
        Path of a SLURM profile YAML, or the profile inline.
    log_dir
        Where submitit writes job logs (default: inside the run folder).
    lock_stale_s
        Seconds after which the lock of an output held by a process on ANOTHER host counts
        as stale (its heartbeat renews it every minute); on the same host a lock is stale as
        soon as its process is dead.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "dask", "slurm"] = "local"
    workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    scheduler_address: str | None = None
    dask_slurm: bool = False
    dask_interface: str | None = None
    dask_window: int = Field(default=2, ge=1)
    profile: Path | SlurmProfile | None = None
    log_dir: Path | None = None
    lock_stale_s: float = Field(default=900, gt=0)
