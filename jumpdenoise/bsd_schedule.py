"""The ``budget`` schedule of the BSD protocol: the most Noise2Void gets out of M minutes of wall time.

Training stops at the deadline (Lightning's ``max_time``), and the learning rate follows the wall
clock, not the epoch count: a linear warm-up over the first :data:`WARMUP_FRACTION` of the budget,
then a half cosine from the peak down to zero at the deadline (:func:`budget_lr`, applied before
every step by :class:`WallClockCosine`). The epoch count is only a bound that is never reached; an
epoch is a fixed number of patches, after which the validation loss is measured and a checkpoint
written.

The other choices depend on the training device (:func:`budget_train_settings`). Both are bound by
the network's arithmetic, not by cutting and masking patches (one CPU process prepares 12,000
masked 64x64 patches/s; an H200 trained the paper's network at 3,200 patches/s, about 80 TFLOP/s in
bf16), so a budget is a number of floating-point operations to spend:

- CUDA: a U-Net of depth 2 with 64 initial features (the paper's 96 costs 2.2x more per patch: the
  8 minutes would see 15 % of the paper's 10 million patches), 64x64 patches in batches of 128,
  bf16 mixed precision, CUDA graphs, 14 data-loading workers at most;
- CPU: 16 initial features (a step costs 2.5x less than with 32, measured), 64x64 patches in
  batches of 8 (more updates for the few operations a CPU has), float32, no worker processes.

Both mask 1 % of the pixels of a patch (the paper: 0.198 %): five times more loss terms per patch
for the same network pass. Both train plain N2V: N2V2's median masking runs at a tenth of the
uniform masking's speed on the CPU (measured), and its gain is reported after full schedules.
The N2V protocol is kept: noisy training images only.

This module imports Lightning; :mod:`jumpdenoise.bsd` imports it only when the budget schedule is used.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import lightning.pytorch as pl

from jumpdenoise.errors import ConfigError, JumpDenoiseError

__all__ = ["PEAK_LR", "WARMUP_FRACTION", "WallClockCosine", "budget_lr", "budget_train_settings",
           "with_deadline"]

#: Peak learning rate of the budget schedule (Adam), reached at the end of the warm-up.
PEAK_LR = 1e-3
#: Share of the wall-time budget spent warming the learning rate up linearly from zero.
WARMUP_FRACTION = 0.05


def budget_lr(elapsed_s: float, budget_s: float, peak_lr: float = PEAK_LR,
              warmup_fraction: float = WARMUP_FRACTION) -> float:
    """Learning rate after ``elapsed_s`` seconds of a ``budget_s``-second training.

    Linear warm-up from ``peak_lr / 100`` to ``peak_lr`` over ``warmup_fraction * budget_s``, then
    ``peak_lr * (1 + cos(pi * progress)) / 2`` with ``progress`` going from 0 to 1 at the deadline;
    zero after the deadline.

    Raises
    ------
    JumpDenoiseError
        If ``budget_s`` is not positive or ``warmup_fraction`` is outside ``[0, 1)``.
    """
    if budget_s <= 0:
        raise JumpDenoiseError(f"budget must be positive, got {budget_s} s")
    if not 0 <= warmup_fraction < 1:
        raise JumpDenoiseError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    warmup_s = warmup_fraction * budget_s
    if elapsed_s >= budget_s:
        return 0.0
    if elapsed_s < warmup_s:
        return peak_lr * (0.01 + 0.99 * max(elapsed_s, 0.0) / warmup_s)
    progress = (elapsed_s - warmup_s) / (budget_s - warmup_s)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


class WallClockCosine(pl.Callback):
    """Lightning callback: set every optimizer's learning rate to :func:`budget_lr` before each step.

    The clock starts when training starts (as Lightning's ``max_time`` timer does), so the
    learning rate reaches zero when the trainer stops. The scheduler configured in CAREamics
    (``ReduceLROnPlateau``) may still change the rate at an epoch's end; the next step overrides it.

    Parameters
    ----------
    budget_s
        Training wall time in seconds (the trainer's ``max_time``).
    peak_lr, warmup_fraction
        See :func:`budget_lr`.
    """

    def __init__(self, budget_s: float, peak_lr: float = PEAK_LR, warmup_fraction: float = WARMUP_FRACTION) -> None:
        budget_lr(0.0, budget_s, peak_lr, warmup_fraction)  # validates the arguments
        self.budget_s, self.peak_lr, self.warmup_fraction = budget_s, peak_lr, warmup_fraction
        self.t0: float | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.t0 = time.monotonic()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        elapsed = time.monotonic() - (self.t0 if self.t0 is not None else time.monotonic())
        lr = budget_lr(elapsed, self.budget_s, self.peak_lr, self.warmup_fraction)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr


def budget_train_settings(device: str = "auto") -> dict:
    """Keyword arguments of :func:`jumpdenoise.bsd.train_bsd_model` for the budget schedule.

    Parameters
    ----------
    device
        ``auto`` (CUDA when torch sees a GPU), ``cuda`` or ``cpu``: the settings of that device.

    Returns
    -------
    dict
        ``epochs`` (an upper bound; the deadline stops training), patches, batch, network,
        masking, learning rate and trainer settings (precision, workers).
    """
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    common = {"epochs": 100_000, "patch_size": 64, "n2v2": False, "val_fraction": 0.02,
              "experiment_name": "jumpdenoise_bsd_budget", "optimizer": {"lr": PEAK_LR},
              "n2v": {"masked_pixel_percentage": 1.0}}
    if device.startswith("cuda"):
        workers = max(2, min(14, (os.cpu_count() or 4) - 2))
        return {**common, "batch_size": 128, "patches_per_epoch": 128 * 800, "n_val_patches": 1024,
                "model": {"num_channels_init": 64},
                "trainer": {"precision": "bf16-mixed", "num_workers": workers}}
    if device == "cpu":
        return {**common, "batch_size": 8, "patches_per_epoch": 8 * 200, "n_val_patches": 128,
                "model": {"num_channels_init": 16}, "trainer": {"precision": "32-true", "num_workers": 0}}
    raise ConfigError(f"--device {device!r}: the budget schedule knows cpu, cuda and auto")


def with_deadline(train_kwargs: dict, schedule_name: str, max_minutes: float | None) -> dict:
    """Training settings that stop after ``max_minutes`` of wall time (``None``: unchanged).

    For the ``budget`` schedule the deadline is required, and the settings get the callback that sets
    the learning rate from the wall clock (:class:`~jumpdenoise.bsd_schedule.WallClockCosine`).
    Returns a new dict of keyword arguments of :func:`jumpdenoise.bsd.train_bsd_model`.

    Raises
    ------
    JumpDenoiseError
        If the ``budget`` schedule is given without ``max_minutes``.
    """
    train_kwargs = dict(train_kwargs)
    if max_minutes is not None:
        trainer = dict(train_kwargs.get("trainer") or {})
        trainer["extra"] = {**trainer.get("extra", {}), "max_time": {"seconds": round(max_minutes * 60)}}
        train_kwargs["trainer"] = trainer
    if schedule_name == "budget":
        if max_minutes is None:
            raise JumpDenoiseError("the budget schedule needs --max-minutes (its learning rate ends at that deadline)")
        train_kwargs["callbacks"] = [WallClockCosine(round(max_minutes * 60), peak_lr=train_kwargs["optimizer"]["lr"])]
    return train_kwargs
