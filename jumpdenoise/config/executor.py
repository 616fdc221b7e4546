"""Configuration of where units run: locally, on Dask, or on SLURM through submitit."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SlurmProfile(BaseModel):
    """Resources and setup of a SLURM cluster (one YAML profile in ``slurm/``).

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
        GPUs per node for GPU stages (training, prediction).
    setup
        Shell lines run before the job (module loads, environment activation).
    max_array_size
        Largest array the cluster accepts; bigger arrays are split.
    array_parallelism
        How many array tasks may run at once.
    extra
        Other ``slurm_*`` parameters for submitit, without the prefix.
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
    setup: list[str] = Field(default_factory=list)
    max_array_size: int = Field(default=1000, ge=1)
    array_parallelism: int = Field(default=64, ge=1)
    extra: dict[str, object] = Field(default_factory=dict)


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
        Start Dask workers as SLURM jobs (dask-jobqueue) using ``profile``.
    profile
        Path of a SLURM profile YAML, or the profile inline.
    log_dir
        Where submitit writes job logs (default: inside the run folder).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "dask", "slurm"] = "local"
    workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    scheduler_address: str | None = None
    dask_slurm: bool = False
    profile: Path | SlurmProfile | None = None
    log_dir: Path | None = None
