"""Executors run a stage's units locally, on Dask, or on SLURM; they know nothing of images."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily: Dask and submitit are slow to import
    from jumpdenoise.config.executor import ExecutorConfig
    from jumpdenoise.executors.base import Executor
    from jumpdenoise.stages.base import Stage


def make_executor(config: "ExecutorConfig", stage: "Stage | None" = None) -> "Executor":
    """Return the executor that ``config.kind`` names, shaped by what ``stage`` needs.

    Parameters
    ----------
    config
        Executor settings (``kind``: ``"local"``, ``"dask"``, ``"slurm"``).
    stage
        The stage whose units it runs (:class:`~jumpdenoise.stages.base.Stage`), or ``None``
        for plain units. Its metadata decide: a stage that is not an array (training, the
        report) runs in this process; a local executor runs an ``in_process`` stage
        (prediction) in this process; a local Dask cluster runs the workers of a ``threads``
        stage (conversion) as threads of this process; a SLURM executor uses the stage's
        profile overrides and asks for GPUs when the stage does.

    Raises
    ------
    ConfigError
        If no executor of that kind exists.
    """
    kind = config.kind
    if stage is not None and stage.kind != "array":
        from jumpdenoise.executors.local import LocalExecutor

        return LocalExecutor(1)
    if kind == "local":
        from jumpdenoise.executors.local import LocalExecutor

        return LocalExecutor(1 if stage is not None and stage.in_process else config.workers)
    elif kind == "dask":
        from jumpdenoise.executors.dask import DaskExecutor

        threaded = stage is not None and stage.threads and not config.scheduler_address and not config.dask_slurm
        return DaskExecutor(config, processes=not threaded)
    elif kind == "slurm":
        from jumpdenoise.config import load_profile
        from jumpdenoise.executors.slurm import SlurmExecutor

        return SlurmExecutor(load_profile(config.profile), config.log_dir or "jumpdenoise-slurm-logs",
                             stage=stage.name if stage is not None else None,
                             gpus=bool(stage is not None and stage.gpus))
    from jumpdenoise.errors import ConfigError

    raise ConfigError(f"executor.kind: unknown executor {kind!r}")
