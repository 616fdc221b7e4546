"""Executors run a stage's units locally, on Dask, or on SLURM; they know nothing of images."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily: Dask and submitit are slow to import
    from jumpdenoise.config.executor import ExecutorConfig
    from jumpdenoise.executors.base import Executor


def make_executor(config: "ExecutorConfig") -> "Executor":
    """Return the executor that ``config.kind`` names.

    Parameters
    ----------
    config
        Executor settings (``kind``: ``"local"``, ``"dask"``, ...).

    Raises
    ------
    ConfigError
        If no executor of that kind exists.
    """
    kind = config.kind
    if kind == "local":
        from jumpdenoise.executors.local import LocalExecutor

        return LocalExecutor(config.workers)
    elif kind == "dask":
        from jumpdenoise.executors.dask import DaskExecutor

        return DaskExecutor(config)
    elif kind == "slurm":
        from jumpdenoise.config import load_profile
        from jumpdenoise.executors.slurm import SlurmExecutor

        return SlurmExecutor(load_profile(config.profile), config.log_dir or "jumpdenoise-slurm-logs")
    from jumpdenoise.errors import ConfigError

    raise ConfigError(f"executor.kind: unknown executor {kind!r}")
