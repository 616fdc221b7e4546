"""Lightning wiring: CAREamics' N2V module fed by jumpdenoise's own data module.

:class:`JumpN2VModule` *is* CAREamics' ``N2VModule`` (same hyper-parameters, same state dict:
the UNet lives under ``model.``), so its checkpoints load with
``careamics.CAREamist(checkpoint_path=...)``. It changes what CAREamics gets wrong under
DDP: batches are plain tensors from :class:`PatchDataModule`, masking is seeded per rank,
worker and batch, validation masks are the same every epoch, and losses are synchronised across
ranks. And what slows it on a GPU: batches arrive already masked by the data workers
(CAREamics' masking functions, :class:`~jumpdenoise.train.masking.LoaderMasking`), the
network and loss replay as CUDA graphs on one GPU (:mod:`jumpdenoise.train.graphs`),
activations are channels-last, and Adam runs fused.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from careamics.lightning import N2VModule
from careamics.losses import n2v_loss
from lightning.pytorch.callbacks import ModelCheckpoint

from jumpdenoise.progress import log_progress
from jumpdenoise.train.fields import FieldRef
from jumpdenoise.train.masking import LoaderMasking
from jumpdenoise.train.patches import PatchStream, regions_in_cache, val_patches
from jumpdenoise.train.run_folder import RunFolder

log = logging.getLogger("jumpdenoise.train")


class JumpN2VModule(N2VModule):
    """CAREamics ``N2VModule`` trained on batches masked by the data workers, under (optionally) DDP.

    Training batches arrive in :meth:`~jumpdenoise.train.masking.LoaderMasking.sparse` form
    ``(original, index, values)``, validation batches as ``(masked, original, mask)``.
    """

    #: Channels-last activations (set by :func:`jumpdenoise.train.loop.fit`).
    channels_last: bool = True
    #: Replay the training step as CUDA graphs where they can run (set by :func:`~jumpdenoise.train.loop.fit`).
    cuda_graphs: bool = False
    #: Adam as one fused kernel per step on CUDA (set by :func:`~jumpdenoise.train.loop.fit`).
    fused_adam: bool = True

    def configure_model(self) -> None:
        """The UNet's weights in channels-last memory format, when :attr:`channels_last` is set."""
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def on_fit_start(self) -> None:
        """Replace CAREamics' hook (it requires CAREamics' own data module)."""

    @staticmethod
    def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(masked, original, mask)`` of a batch masked in the data workers.

        Raises
        ------
        ValueError
            If the batch is not masked (see :class:`~jumpdenoise.train.masking.LoaderMasking`).
        """
        if not isinstance(batch, (list, tuple)) or len(batch) != 3:
            raise ValueError("training batches must come masked by the data workers (masking.LoaderMasking), "
                             f"got {type(batch).__name__}")
        if batch[1].ndim == 1:
            from jumpdenoise.train.masking import densify

            return densify(*batch)
        return batch[0], batch[1], batch[2]

    def _loss(self, batch: Any) -> tuple[torch.Tensor, int]:
        x_masked, x, mask = self._unpack(batch)
        if self.cuda_graphs and self.training:
            graphed = self._graphed_loss(x_masked, x, mask)
            if graphed is not None:
                return graphed(x_masked, x, mask), x.shape[0]
        if self.channels_last:
            x_masked = x_masked.contiguous(memory_format=torch.channels_last)
        prediction = self.model(x_masked)
        return n2v_loss(prediction.float(), x.float(), mask), x.shape[0]

    def _graphed_loss(self, x_masked: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> Any:
        """The CUDA-graphed loss for batches of this shape (captured once; ``None``: eager)."""
        from jumpdenoise.train.graphs import graphs_supported, try_graph_n2v_loss

        key = (tuple(x_masked.shape), x_masked.dtype, mask.dtype)
        graphs = self.__dict__.setdefault("_graphs", {})  # not a submodule: no duplicate state-dict keys
        if key not in graphs:
            ok, why = graphs_supported(x_masked.device, self.trainer.world_size, self.trainer.precision)
            if not ok:
                log.info("CUDA graphs off: %s", why)
                self.cuda_graphs = False
                return None
            graphs[key] = try_graph_n2v_loss(self.model, (x_masked, x, mask), channels_last=self.channels_last,
                                             bf16=str(self.trainer.precision).startswith("bf16"))
        return graphs[key]

    def configure_optimizers(self) -> Any:
        """CAREamics' optimizer and scheduler; Adam runs fused (one kernel per step) on CUDA."""
        conf = super().configure_optimizers()
        opt = conf["optimizer"] if isinstance(conf, dict) else None
        if self.fused_adam and isinstance(opt, torch.optim.Adam) and self.device.type == "cuda":
            for group in opt.param_groups:
                group.update(fused=True, foreach=False)
        return conf

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:  # type: ignore[override]
        """N2V loss on one batch; logs ``loss`` (progress bar), ``train_loss`` and the lr."""
        loss, n = self._loss(batch)
        if self.trainer.progress_bar_callback is not None:  # reading it for the bar syncs with the GPU
            self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True, logger=False, batch_size=n)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=n)
        opt = self.optimizers()
        opt = opt[0] if isinstance(opt, list) else opt
        self.log("learning_rate", float(opt.param_groups[0]["lr"]), on_step=False, on_epoch=True, batch_size=n,
                 sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:  # type: ignore[override]
        """N2V loss on fixed validation patches, averaged over all ranks (``sync_dist``)."""
        loss, n = self._loss(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n)


class PatchDataModule(pl.LightningDataModule):
    """Training patches streamed from fields; fixed validation patches.

    Parameters
    ----------
    train_refs, val_refs
        Training and validation fields.
    mean, std
        Per-channel normalisation (computed once, identical on every rank).
    patch_size, batch_size
        Patch side and patches per step per rank.
    patches_per_epoch
        Training patches per epoch over all ranks.
    n_val_patches
        Validation patches (split among ranks by Lightning's distributed sampler).
    seed
        Global seed.
    augmentations
        CAREamics augmentation dicts.
    num_workers, persistent_workers, pin_memory
        DataLoader settings (``pin_memory=None``: when the accelerator is a GPU).
    masking
        N2V masking done in the data workers
        (:class:`~jumpdenoise.train.masking.LoaderMasking`); the validation patches are
        masked once, with a fixed seed.
    phase_split
        Patches are cut from the fields' phase sub-images (:mod:`jumpdenoise.compute.phases`).
    """

    def __init__(self, train_refs: list[FieldRef], val_refs: list[FieldRef], mean: list[float],
                 std: list[float], *, patch_size: int, batch_size: int, patches_per_epoch: int,
                 n_val_patches: int, seed: int, augmentations: list[dict], masking: LoaderMasking,
                 num_workers: int = 0, persistent_workers: bool = True, pin_memory: bool | None = None,
                 phase_split: int = 1) -> None:
        super().__init__()
        self.phase_split = phase_split
        self.masking = masking
        self.train_refs, self.val_refs = train_refs, val_refs
        self.mean, self.std = list(mean), list(std)
        self.patch_size, self.batch_size = patch_size, batch_size
        self.patches_per_epoch, self.n_val_patches = patches_per_epoch, n_val_patches
        self.seed, self.augmentations = seed, augmentations
        self.num_workers, self.persistent_workers, self.pin_memory = num_workers, persistent_workers, pin_memory
        self._val: tuple[torch.Tensor, ...] | None = None
        self.train_stream: PatchStream | None = None

    def _world(self) -> tuple[int, int, str]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1, "cpu"
        return trainer.global_rank, trainer.world_size, type(trainer.accelerator).__name__.lower()

    def batches_per_epoch(self, world_size: int) -> int:
        """Training batches per rank and epoch."""
        return max(1, -(-self.patches_per_epoch // (self.batch_size * world_size)))

    def setup(self, stage: str | None = None) -> None:
        """Draw the validation patches (once) and build this rank's patch stream."""
        rank, world, _ = self._world()
        if self._val is None:
            val = torch.from_numpy(val_patches(self.val_refs, self.mean, self.std, n=self.n_val_patches,
                                               patch_size=self.patch_size, seed=self.seed,
                                               phase_split=self.phase_split))
            self._val = tuple(self.masking(val, self.seed + 7))
        self.train_stream = PatchStream(
            self.train_refs, self.mean, self.std, patch_size=self.patch_size, batch_size=self.batch_size,
            batches_per_epoch=self.batches_per_epoch(world), seed=self.seed, rank=rank,
            augmentations=self.augmentations, masking=self.masking,
            regions_in_cache=regions_in_cache(self.train_refs), phase_split=self.phase_split)

    def _pin(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        return "cuda" in self._world()[2]

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """Whole batches from the stream (``batch_size=None``: no per-sample collation)."""
        nw = self.num_workers
        return torch.utils.data.DataLoader(
            self.train_stream, batch_size=None, num_workers=nw, pin_memory=self._pin(),
            persistent_workers=bool(nw and self.persistent_workers), prefetch_factor=4 if nw else None)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        """The fixed validation patches (in memory)."""
        ds = torch.utils.data.TensorDataset(*self._val)
        return torch.utils.data.DataLoader(ds, batch_size=self.batch_size, shuffle=False,
                                           pin_memory=self._pin())


class EpochReport(pl.Callback):
    """Per-epoch line (loss, val loss, lr, patches/s; a PROGRESS record, see
    :func:`jumpdenoise.progress.log_progress`), curves.csv/png and best.json (rank 0)."""

    def __init__(self, run: RunFolder, batch_size: int) -> None:
        self.run, self.batch_size = run, batch_size
        self.t0 = self.t_last = time.perf_counter()
        self.n = 0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.t0 = self.t_last = time.perf_counter()
        self.n = 0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        self.n += 1
        self.t_last = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        from jumpdenoise.train.run_folder import append_curve, plot_curves

        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        get = lambda k: float(m[k]) if k in m else float("nan")  # noqa: E731
        seconds = max(self.t_last - self.t0, 1e-9)
        rate = self.n * self.batch_size * trainer.world_size / seconds
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, "train_loss": get("train_loss"),
               "val_loss": get("val_loss"), "learning_rate": get("learning_rate"),
               "patches_per_s": round(rate, 1), "seconds": round(seconds, 2)}
        line = (f"epoch {row['epoch']:>3d}  loss {row['train_loss']:.5f}  val_loss {row['val_loss']:.5f}  "
                f"lr {row['learning_rate']:.2e}  {row['patches_per_s']:.0f} patches/s")
        log_progress(log, line)
        if self.run.path.is_dir():
            append_curve(self.run, row)
            plot_curves(self.run)


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` saving at the end of each training epoch, then writing best.json.

    Lightning runs checkpoint callbacks after the others, so the epoch's curves row is
    written before its checkpoint: a run killed in between retrains that epoch and
    replaces the row.
    """

    def __init__(self, run: RunFolder, **kwargs: Any) -> None:
        super().__init__(save_on_train_epoch_end=True, **kwargs)
        self.run = run

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        from jumpdenoise.train.run_folder import write_best

        if trainer.is_global_zero:
            self._forget_digests()  # a run killed while saving leaves no digest, never a wrong one
        super().on_train_epoch_end(trainer, pl_module)
        if trainer.is_global_zero and self.run.path.is_dir():
            self._write_digests()
            score = self.best_model_score
            write_best(self.run, best_path=self.best_model_path or None,
                       best_score=None if score is None else float(score), epochs_done=trainer.current_epoch + 1)

    def _saved(self) -> list[Path]:
        return [Path(p) for p in {self.last_model_path, *self.best_k_models} if p]

    def _forget_digests(self) -> None:
        from jumpdenoise.train.run_folder import checkpoint_digest_path

        for path in self._saved():
            checkpoint_digest_path(path).unlink(missing_ok=True)

    def _write_digests(self) -> None:
        """A SHA-256 beside every checkpoint kept (checked when a model is loaded); digests of
        checkpoints Lightning removed go too."""
        from jumpdenoise.train.run_folder import write_checkpoint_digest

        for path in self._saved():
            if path.is_file():
                write_checkpoint_digest(path)
        folder = Path(self.dirpath) if self.dirpath else None
        if folder is not None and folder.is_dir():
            for digest in folder.glob("*.sha256"):
                if not digest.with_suffix("").is_file():
                    digest.unlink(missing_ok=True)
