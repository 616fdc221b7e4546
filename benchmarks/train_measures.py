"""What a training benchmark run is measured with: its data, timer, validation loss and PSNR.

:func:`build_data` writes the noisy plate and keeps its fields and their truths in memory;
:func:`make_timer` times training steps (and probes the validation loss) from a Lightning
callback; :func:`common_val_set` and :func:`common_val_loss` give every run the same masked
validation patches; :func:`psnr_on_truth` scores a network against the truth. Used by
``benchmarks/train.py``, which puts the repository root on ``sys.path`` (for ``tests.fixtures``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def make_timer(warmup: int, steps: int, batch: int, sync_cuda: bool, val: tuple | None = None, *,
               probe_every: int = 0, run_until_s: float | None = None):
    """A Lightning callback timing training steps ``warmup`` .. ``warmup + steps``.

    With ``val`` (``(masked, original, mask)`` CPU tensors), the trained network's N2V loss
    on them is measured after ``warmup + steps`` steps (eval mode, fp32): the same validation
    set and masks for every run, so runs of equal steps compare at equal validation loss.
    ``probe_every`` > 0 also measures it every that many steps, with the training time
    (from the start of training, the probes' own time left out) in :attr:`curve`.
    ``run_until_s``: keep training after ``warmup + steps`` until that much training time has
    passed, then keep the network's weights in :attr:`snapshot` (the comparison at equal time).
    """
    import copy

    import lightning.pytorch as pl
    import torch

    def sync() -> None:
        if sync_cuda:
            torch.cuda.synchronize()

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.t0 = self.t1 = None
            self.p0 = self.p1 = 0.0
            self.count = 0
            self.val_loss = float("nan")
            self.graphs = False
            self.start = None
            self.paused = 0.0  # seconds spent in probes, left out of the training time
            self.curve: list[tuple[float, int, float]] = []
            self.train_s = float("nan")
            self.snapshot = None

        def elapsed(self) -> float:
            return time.perf_counter() - self.start - self.paused

        def on_train_start(self, trainer, pl_module) -> None:
            self.start = time.perf_counter()

        def probe(self, pl_module) -> float:
            t = time.perf_counter()
            loss = common_val_loss(pl_module.model, val)
            self.curve.append((round(self.train_s, 3), self.count, loss))
            self.paused += time.perf_counter() - t
            return loss

        def on_train_batch_end(self, trainer, pl_module, outputs, batch_, batch_idx) -> None:
            self.count += 1
            end = warmup + steps
            if self.count in (warmup, end) or probe_every or run_until_s:
                sync()
            now = time.perf_counter()
            self.train_s = self.elapsed()
            if self.count == warmup:
                self.t0, self.p0 = now, self.paused
            if self.count == end:
                self.t1, self.p1 = now, self.paused
                if val is not None:
                    self.val_loss = self.probe(pl_module)
            elif val is not None and probe_every and self.count % probe_every == 0:
                self.probe(pl_module)
            if self.count >= end and (run_until_s is None or self.train_s >= run_until_s):
                if run_until_s is not None:
                    self.snapshot = copy.deepcopy(pl_module.model).eval()
                trainer.should_stop = True

        def on_train_end(self, trainer, pl_module) -> None:
            # The data ran out before warmup + steps (a short CAREamics epoch): time the steps done.
            if self.t0 is not None and self.t1 is None and self.count > warmup:
                sync()
                self.t1, self.p1 = time.perf_counter(), self.paused
                if val is not None:
                    self.val_loss = self.probe(pl_module)
            self.graphs = any(g is not None for g in getattr(pl_module, "__dict__", {}).get("_graphs", {}).values())
            if self.snapshot is None:
                self.snapshot = copy.deepcopy(pl_module.model).eval()

        @property
        def rate(self) -> float:
            if self.t0 is None or self.t1 is None:
                return float("nan")
            done = min(steps, self.count - warmup)
            if done < steps:
                print(f"  (only {done} of {steps} timed steps: the epoch ended first)", flush=True)
            return done * batch / (self.t1 - self.t0 - (self.p1 - self.p0))

        def time_to(self, loss: float) -> float | None:
            """Training seconds until the first probe at or below ``loss`` (None: never)."""
            return next((t for t, _, v in self.curve if v <= loss), None)

    return StepTimer()


def common_val_loss(model, val: tuple, batch: int = 64, shift=None) -> float:
    """N2V loss of ``model`` (eval mode, fp32) on fixed masked validation patches; ``shift``: a
    per-channel constant (normalised units) subtracted from its output first."""
    import torch
    from careamics.losses import n2v_loss

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = weight = 0.0
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        for i in range(0, len(val[0]), batch):
            masked, original, mask = (t[i:i + batch].to(device) for t in val)
            pred = model(masked.contiguous(memory_format=torch.channels_last)
                         if next(model.parameters()).is_contiguous(memory_format=torch.channels_last) else masked)
            if shift is not None:
                pred = pred - torch.as_tensor(np.asarray(shift), dtype=pred.dtype, device=device).view(1, -1, 1, 1)
            n = float(mask.sum())
            total += float(n2v_loss(pred.float(), original.float(), mask)) * n
            weight += n
    model.train(was_training)
    return total / max(weight, 1.0)


def common_val_set(cfg, n: int = 256, maskings: int = 8) -> tuple:
    """Fixed validation patches of the setup's validation fields, each masked ``maskings`` times
    (CAREamics' masking, seeds 99, 100, ...).

    One masking of 256 patches of 64^2 at 0.2 % holds about 2,100 masked pixels per channel, too
    few for the loss's heavy tail (bright cells): two networks of equal quality then differ by
    several per cent. Eight maskings of the same patches give eight times the masked pixels.
    """
    import torch

    from jumpdenoise.stages.train import build_training_setup
    from jumpdenoise.train.masking import LoaderMasking
    from jumpdenoise.train.patches import val_patches

    setup = build_training_setup(cfg)
    x = torch.from_numpy(val_patches(setup.val_refs, setup.mean, setup.std, n=n, patch_size=setup.tc.patch_size,
                                     seed=99))
    masking = LoaderMasking(setup.careamics_config().algorithm_config.n2v_config.model_dump())
    parts = [masking(x.clone(), seed=99 + k) for k in range(maskings)]
    return tuple(torch.cat([p[i] for p in parts]) for i in range(3))


#: The benchmark plate's channels; ``--channels N`` trains the first N.
CHANNELS = ["DNA", "ER", "RNA", "AGP"]


def _draw_scene(n_channels: int, size: int, seed: int, cells: int) -> np.ndarray:
    """One clean scene (``tests.fixtures.plates.noisy_field``'s expected image)."""
    from tests.fixtures.plates import noisy_field

    return noisy_field(n_channels, size, seed, n_cells=cells)[1]


def build_data(workdir: Path, n_wells: int, n_fields: int, size: int, seed: int, n_channels: int = 4
               ) -> tuple[Path, dict, dict, list[str]]:
    """Write the noisy plate; return it, its fields in memory, their truths (expected values) and
    the validation wells. Channels: the first ``n_channels`` of :data:`CHANNELS`.

    Every field is a scene of its own, as on a real plate (the scenes are drawn in parallel: about
    2 s each at 1024^2 x 4 channels). A plate whose fields repeat a few scenes favours a trainer
    holding every field in memory over one that streams a bounded cache of fields (whose cached
    fields then often show fewer scenes than the cache holds), and a validation scene seen in
    training would reward remembering scenes, not denoising. The last well is the validation well.
    """
    import functools
    import os
    from concurrent.futures import ProcessPoolExecutor

    from tests.fixtures.plates import write_plate

    channels = CHANNELS[:n_channels]
    wells = [f"{'ABCDEFGHIJKLMNOP'[i // 24]}{i % 24 + 1:02d}" for i in range(n_wells)]
    keys = [(w, f) for w in wells for f in range(n_fields)]
    cells = int(40 * (size / 256) ** 2)
    draw = functools.partial(_draw_scene, n_channels, size, cells=cells)
    scene_seeds = [seed + 10 * i for i in range(len(keys))]
    with ProcessPoolExecutor(max_workers=max(1, min(len(keys), os.cpu_count() or 1))) as pool:
        scenes = list(pool.map(draw, scene_seeds))
    fields, truths = {}, {}
    for i, (key, clean) in enumerate(zip(keys, scenes)):
        rng = np.random.default_rng([seed, i])
        signal = rng.poisson(np.maximum(clean - 300, 0) * 2.0) / 2.0  # 20 photons per 10 units, as noisy_field
        fields[key] = np.clip(300 + signal + rng.normal(0, 30.0, clean.shape), 0, 65535).astype(np.uint16)
        truths[key] = np.maximum(clean, 300).astype(np.float32)  # E[field] (the clip at 0 never binds)
    plate = write_plate(workdir / "bench.zarr", fields, channels, overwrite=True)
    return plate, fields, truths, [wells[-1]]


def psnr_on_truth(model, setup, fields: dict, truths: dict, crop: int | None = None
                  ) -> tuple[float, float, np.ndarray]:
    """Mean PSNR (dB, :func:`jumpdenoise.quality.metrics.score`) of ``model`` on the validation
    fields (whole, or their centre ``crop`` x ``crop``) against their truth: of its output, and of its
    output with its offset removed as training removes it (:mod:`jumpdenoise.quality.calibration`:
    ``mean(f(y) - y)`` per channel over the first :data:`~jumpdenoise.quality.gain.MAX_FIELDS` validation
    fields, no truth used), and that offset in normalised units (per channel). ``model=None``: of the
    raw fields (twice), offset 0.
    """
    import torch

    from jumpdenoise.quality.gain import MAX_FIELDS
    from jumpdenoise.quality.metrics import score

    val_wells = set(setup.split["val_wells"])
    mean = np.asarray(setup.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(setup.std, np.float32).reshape(-1, 1, 1)
    images, offsets = [], []
    for key, noisy in fields.items():
        if key[0] not in val_wells:
            continue
        image = noisy.astype(np.float32)
        if model is not None:
            device = next(model.parameters()).device
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                x = torch.from_numpy((image - mean) / std)[None].to(device)
                image = model.eval()(x)[0].float().cpu().numpy() * std + mean
        if len(offsets) < MAX_FIELDS:
            offsets.append((image.astype(np.float64) - noisy).mean(axis=(1, 2)))
        images.append((key, image))
    offset = np.mean(offsets, axis=0).reshape(-1, 1, 1) if model is not None else 0.0
    plain, corrected = [], []
    for key, image in images:
        crop_y, crop_x = (image.shape[-2], image.shape[-1]) if crop is None else (crop, crop)
        y0, x0 = (image.shape[-2] - crop_y) // 2, (image.shape[-1] - crop_x) // 2
        window = (slice(None), slice(y0, y0 + crop_y), slice(x0, x0 + crop_x))
        for c in range(image.shape[0]):
            truth = truths[key][window][c]
            plain.append(score(image[window][c], truth)["psnr"])
            corrected.append(score((image - offset)[window][c], truth)["psnr"])
    return float(np.mean(plain)), float(np.mean(corrected)), (np.asarray(offset) / std).reshape(-1)
