"""Run one training: Lightning trainer, callbacks, SLURM checks, resume.

A :class:`TrainingSetup` is what every entry point (plate stage, arrays, image folders) builds;
:func:`write_run_header` writes the run folder's description (rank 0) and :func:`fit`
trains, resuming from ``checkpoints/last.ckpt`` when the folder has one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jumpdenoise.compute.threads import pinned_torch_threads
from jumpdenoise.config.train import TrainConfig, TrainerSettings
from jumpdenoise.errors import ClusterError
from jumpdenoise.train.fields import FieldRef
from jumpdenoise.train.run_folder import RunFolder, is_global_zero

log = logging.getLogger("jumpdenoise.train")


@dataclass
class TrainingSetup:
    """Everything one training needs; identical on every rank (deterministic from the config).

    Attributes
    ----------
    tc
        Training settings.
    run
        Run folder.
    train_refs, val_refs
        Fields (or row bands) for training and validation.
    channels
        Channel names, in model order.
    mean, std, norm_source
        Normalisation, computed once, and where it came from.
    split
        The content of split.json.
    data_type
        ``"zarr"`` (plate) or ``"array"`` (what the training reads; CAREamics' config always
        says ``"array"``, see :func:`~jumpdenoise.train.careamics_config.build_careamics_config`).
    resolved_config
        The content of config.yaml.
    phase_split, phase_record
        Patches come from the fields' ``phase_split x phase_split`` phase sub-images
        (:mod:`jumpdenoise.train.phase_choice`), and the record of that choice
        (``noise_correlation.json``).
    """

    tc: TrainConfig
    run: RunFolder
    train_refs: list[FieldRef]
    val_refs: list[FieldRef]
    channels: list[str]
    mean: list[float]
    std: list[float]
    norm_source: str
    split: dict
    data_type: str = "zarr"
    resolved_config: dict = field(default_factory=dict)
    phase_split: int = 1
    phase_record: dict = field(default_factory=dict)

    @property
    def patches_per_epoch(self) -> int:
        """Training patches per epoch (all ranks): configured, or one per patch-sized area."""
        if self.tc.patches_per_epoch:
            return self.tc.patches_per_epoch
        area = sum(r.n_pixels for r in self.train_refs)
        return max(self.tc.batch_size, area // self.tc.patch_size ** 2)

    def careamics_config(self, world_size: int = 1) -> Any:
        """The CAREamics configuration of this setup."""
        from jumpdenoise.train.careamics_config import build_careamics_config

        return build_careamics_config(self.tc, n_channels=len(self.channels), mean=self.mean, std=self.std,
                                      world_size=world_size)


def write_run_header(setup: TrainingSetup) -> None:
    """Write config.yaml, careamics_config.yaml, normalization.json, split.json and
    noise_correlation.json (rank 0 only)."""
    from jumpdenoise.train.run_folder import write_header, write_json

    if not is_global_zero():
        return
    import numpy as np

    from jumpdenoise.train.export import EXAMPLE_INPUT, example_crop

    norm = {"channels": setup.channels, "mean": setup.mean, "std": setup.std, "source": setup.norm_source}
    write_header(setup.run, config=setup.resolved_config, careamics_config=setup.careamics_config(),
                 normalization=norm, split=setup.split)
    write_json(setup.run.noise_correlation, setup.phase_record or {"phase_split": setup.phase_split})
    example = setup.run.path / EXAMPLE_INPUT
    if not example.is_file():  # a raw crop of a validation field: BMZ export test input
        np.save(example, example_crop(setup.val_refs[0].load(), setup.tc.model.depth))


def _tasks_per_node() -> int | None:
    raw = os.environ.get("SLURM_NTASKS_PER_NODE") or os.environ.get("SLURM_TASKS_PER_NODE")
    if not raw:
        return None
    m = re.match(r"(\d+)", raw)
    return int(m.group(1)) if m else None


def check_cluster(ts: TrainerSettings) -> tuple[int | str, int, list]:
    """Devices, nodes and plugins for the trainer; fail fast on a SLURM/DDP mismatch.

    Under SLURM (Lightning's ``SLURMEnvironment.detect()``), processes must be started by
    srun, one task per device: tasks per node must equal ``devices`` and the job's nodes
    ``num_nodes``. torchrun inside a SLURM job is refused. Under submitit, Lightning's own
    SLURM auto-requeue is disabled (submitit requeues).

    Raises
    ------
    ClusterError
        Naming what to change.
    """
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    devices, num_nodes, plugins = ts.devices, ts.num_nodes, []
    if not SLURMEnvironment.detect():
        return devices, num_nodes, plugins
    if "TORCHELASTIC_RUN_ID" in os.environ:
        raise ClusterError("training was started by torchrun inside a SLURM job: start one task per "
                           "device with srun (submitit does this) and do not use torchrun")
    tpn = _tasks_per_node()
    nnodes = int(os.environ.get("SLURM_NNODES") or os.environ.get("SLURM_JOB_NUM_NODES") or 1)
    if devices == "auto":
        devices = tpn or 1
    if tpn is not None and tpn != devices:
        raise ClusterError(
            f"SLURM job runs {tpn} task(s) per node but train.trainer.devices is {devices}: set "
            f"--ntasks-per-node={devices} (submitit: tasks_per_node={devices}, one task per GPU) or "
            f"train.trainer.devices={tpn}")
    if nnodes != num_nodes:
        raise ClusterError(
            f"SLURM job has {nnodes} node(s) but train.trainer.num_nodes is {num_nodes}: set "
            f"--nodes={num_nodes} or train.trainer.num_nodes={nnodes}")
    if "SUBMITIT_EXECUTOR" in os.environ or "SUBMITIT_FOLDER" in os.environ:
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return devices, num_nodes, plugins


def _callbacks(setup: TrainingSetup, careamics_cfg: Any) -> tuple[list, Any]:
    from careamics.lightning import ConfigSaverCallback

    from jumpdenoise.train.module import EpochReport, RunCheckpoint

    ck = setup.tc.checkpoint
    checkpoint = RunCheckpoint(
        setup.run, dirpath=setup.run.checkpoints, filename="epoch={epoch:03d}-val_loss={val_loss:.5f}",
        auto_insert_metric_name=False, monitor=ck.monitor, mode=ck.mode, save_top_k=ck.save_top_k,
        save_last=ck.save_last)
    saver = ConfigSaverCallback(careamics_cfg.version, careamics_cfg.get_safe_experiment_name(),
                                careamics_cfg.training_config, careamics_cfg.data_config)
    return [checkpoint, saver, EpochReport(setup.run, setup.tc.batch_size)], checkpoint


@contextlib.contextmanager
def cudnn_autotune(on: bool):
    """``torch.backends.cudnn.benchmark = on`` inside the block (restored afterwards)."""
    import torch

    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on or saved
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def fit(setup: TrainingSetup, *, extra_callbacks: list | None = None) -> Path:
    """Train (or resume) the setup's run; return the run folder.

    Resumes from ``checkpoints/last.ckpt`` (epoch count, optimizer and scheduler state kept)
    when the run folder has one; a finished run returns at once.
    """
    import lightning.pytorch as pl

    from jumpdenoise.train.careamics_config import augmentation_dicts
    from jumpdenoise.train.masking import LoaderMasking
    from jumpdenoise.train.module import JumpN2VModule, PatchDataModule
    from jumpdenoise.train.run_folder import (
        attach_log_file, detach_log_file, plot_curves, resume_checkpoint, write_best)

    ts = setup.tc.trainer
    devices, num_nodes, plugins = check_cluster(ts)
    handler = attach_log_file(setup.run) if is_global_zero() and setup.run.path.is_dir() else None
    try:
        pl.seed_everything(setup.tc.seed, workers=True, verbose=False)
        careamics_cfg = setup.careamics_config()
        callbacks, checkpoint = _callbacks(setup, careamics_cfg)
        trainer = pl.Trainer(
            accelerator=ts.accelerator, devices=devices, num_nodes=num_nodes, strategy=ts.strategy,
            precision=ts.precision, max_epochs=setup.tc.epochs, callbacks=callbacks + list(extra_callbacks or []),
            logger=False, default_root_dir=setup.run.path, log_every_n_steps=ts.log_every_n_steps,
            gradient_clip_val=ts.gradient_clip_val, enable_progress_bar=ts.enable_progress_bar,
            num_sanity_val_steps=0, plugins=plugins or None, **ts.extra)
        # the lr rule needs the world size, known once the trainer exists
        module = JumpN2VModule(setup.careamics_config(world_size=trainer.world_size).algorithm_config)
        module.channels_last = setup.tc.experimental.channels_last
        module.fused_adam = setup.tc.experimental.fused_adam
        on_gpu = type(trainer.accelerator).__name__ == "CUDAAccelerator"
        # the module checks what graphs need (one device, precision) and trains eagerly otherwise
        module.cuda_graphs = on_gpu and setup.tc.experimental.cuda_graphs
        masking = LoaderMasking(module.config.n2v_config.model_dump())
        data = PatchDataModule(
            setup.train_refs, setup.val_refs, setup.mean, setup.std, patch_size=setup.tc.patch_size,
            batch_size=setup.tc.batch_size, patches_per_epoch=setup.patches_per_epoch,
            n_val_patches=setup.tc.n_val_patches, seed=setup.tc.seed, augmentations=augmentation_dicts(setup.tc),
            num_workers=ts.num_workers, persistent_workers=ts.persistent_workers, pin_memory=ts.pin_memory,
            masking=masking, phase_split=setup.phase_split)
        ckpt = resume_checkpoint(setup.run)
        if ckpt is not None:
            log.info("resuming from %s", ckpt)
        log.info("training %s: %d train / %d val field(s), channels %s, %d patches per epoch, "
                 "effective batch %d (%d x %d processes), lr %g", setup.run.path, len(setup.train_refs),
                 len(setup.val_refs), setup.channels, setup.patches_per_epoch,
                 setup.tc.batch_size * trainer.world_size, setup.tc.batch_size, trainer.world_size,
                 module.config.optimizer.parameters["lr"])
        # one CPU process: pin torch's threads so the bits do not depend on what ran before in this
        # process (DDP ranks get theirs from Lightning)
        single_cpu = trainer.world_size == 1 and type(trainer.accelerator).__name__ == "CPUAccelerator"
        with pinned_torch_threads() if single_cpu else contextlib.nullcontext(), cudnn_autotune(on_gpu):
            trainer.fit(module, datamodule=data, ckpt_path=ckpt)
        if trainer.is_global_zero:
            score = checkpoint.best_model_score
            write_best(setup.run, best_path=checkpoint.best_model_path or None,
                       best_score=None if score is None else float(score), epochs_done=trainer.current_epoch)
            plot_curves(setup.run)
    finally:
        if handler is not None:
            detach_log_file(handler)
    return setup.run.path
