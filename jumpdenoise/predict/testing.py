"""Small models and plates for prediction tests and benchmarks (not used by the pipeline).

:func:`make_run` trains a CAREamics N2V model for a few steps with ``CAREamist`` itself
and lays it out as a jumpdenoise run folder (``careamics_config.yaml``,
``normalization.json``, ``checkpoints/last.ckpt``, ``best.json``), so that both jumpdenoise
and ``CAREamist(checkpoint_path=...)`` load the same weights. :func:`make_plate` writes a
plate of noisy blobs through :mod:`jumpdenoise.io.ngff`.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def noisy_blobs(n_channels: int, shape_yx: tuple[int, int], seed: int, *, dtype: str = "uint16") -> np.ndarray:
    """A ``(c, y, x)`` field of smooth blobs with Poisson-Gaussian noise, offset 100."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    h, w = shape_yx
    out = np.empty((n_channels, h, w), np.float32)
    for c in range(n_channels):
        spots = np.zeros((h, w), np.float32)
        n = max(4, h * w // 2000)
        spots[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.uniform(2e3, 8e3, n)
        clean = gaussian_filter(spots, 3 + c) * 20 + 50
        out[c] = 100 + rng.poisson(clean) + rng.normal(0, 5, (h, w))
    if np.dtype(dtype).kind == "u":
        return np.clip(np.rint(out), 0, np.iinfo(dtype).max).astype(dtype)
    return out.astype(dtype)


def make_plate(path: str | Path, *, wells: Sequence[str] = ("A01", "A02"), n_fields: int = 2,
               channels: Sequence[str] = ("DNA", "ER"), shape_yx: tuple[int, int] = (96, 96), seed: int = 0,
               dtype: str = "uint16", overwrite: bool = False, distinct: int | None = None) -> Path:
    """Write a raw plate of :func:`noisy_blobs` fields; returns its path.

    ``distinct`` fields are synthesised and then reused in turn (default: all distinct),
    which makes large benchmark plates quick to write.
    """
    from jumpdenoise.config.convert import ConvertConfig
    from jumpdenoise.io.layout import Channel, FieldLayout, PlateLayout, PlaneRef, WellLayout, split_well
    from jumpdenoise.io.ngff import create_plate, write_field

    path = Path(path)
    well_layouts = []
    for w in sorted(wells):
        row, col = split_well(w)
        flds = [FieldLayout(index=f, site=f + 1,
                            planes={c: PlaneRef(path=f"/synthetic/{w}-{f + 1}-{c}.tiff") for c in channels})
                for f in range(n_fields)]
        well_layouts.append(WellLayout(row=row, column=col, fields=flds))
    layout = PlateLayout(name="PREDICT-TEST", source_kind="hyperstack", source_path="synthetic", n_rows=16,
                         n_columns=24, channels=[Channel(name=c, source_id=str(i)) for i, c in enumerate(channels)],
                         wells=well_layouts, shape=tuple(shape_yx), dtype=dtype, pixel_size_um=0.6)
    create_plate(path, layout, ConvertConfig(), overwrite=overwrite)
    kept: list[np.ndarray] = []
    k = 0
    for i, w in enumerate(sorted(wells)):
        for f in range(n_fields):
            if distinct and k >= distinct:
                data = kept[k % distinct]
            else:
                data = noisy_blobs(len(channels), shape_yx, seed * 10007 + i * 101 + f, dtype=dtype)
                if distinct:
                    kept.append(data)
            write_field(path, w, f, data)
            k += 1
    return path


def make_run(run_dir: str | Path, *, channels: Sequence[str] = ("DNA", "ER"), depth: int = 2, features: int = 8,
             patch: int = 32, steps: int = 2, seed: int = 1, n2v2: bool = False,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
             accelerator: str = "cpu") -> Path:
    """Train a tiny N2V model with CAREamist for ``steps`` batches and write a run folder.

    Parameters
    ----------
    run_dir
        Folder to create (replaced if it exists).
    channels
        Channel names (one independent UNet branch each).
    depth, features
        UNet depth and filters of its first level.
    patch, steps
        Patch size and number of training batches (a few: the weights only need to be
        a real, non-trivial function).
    mean, std
        Normalisation (default: that of :func:`noisy_blobs` images).
    accelerator
        Lightning accelerator for the few training steps (stored in the checkpoint, so
        ``CAREamist(checkpoint_path=...)`` predicts there too).
    """
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config

    from jumpdenoise.compat import save_careamics_configuration as save_configuration

    run = Path(run_dir)
    if run.exists():
        shutil.rmtree(run)
    (run / "checkpoints").mkdir(parents=True)
    n_c = len(channels)
    data = noisy_blobs(n_c, (4 * patch, 4 * patch), seed, dtype="float32")
    mean = list(mean) if mean is not None else [float(v) for v in data.mean(axis=(1, 2))]
    std = list(std) if std is not None else [float(v) for v in data.std(axis=(1, 2))]
    cfg = create_advanced_n2v_config(
        "jd_predict_test", "array", "CYX", [patch, patch], 4, num_epochs=1, num_steps=steps, n_channels=n_c,
        n_val_patches=2, num_workers=0, model_params={"depth": depth, "num_channels_init": features},
        use_n2v2=n2v2, normalization="mean_std", normalization_params={"input_means": mean, "input_stds": std},
        trainer_params={"accelerator": accelerator, "devices": 1, "enable_model_summary": False}, seed=seed)
    work = run / "_careamics"
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        careamist = CAREamist(cfg, work_dir=work, enable_progress_bar=False)
        careamist.train(train_data=data)
    ckpts = careamist.get_checkpoints()
    last = next((p for p in ckpts if p.name.endswith("last.ckpt")), ckpts[-1])
    shutil.copyfile(last, run / "checkpoints" / "last.ckpt")
    shutil.rmtree(work, ignore_errors=True)
    save_configuration(careamist.config, run / "careamics_config.yaml")
    (run / "normalization.json").write_text(json.dumps(
        {"channels": list(channels), "mean": mean, "std": std, "source": "jumpdenoise.predict.testing"}, indent=1))
    (run / "best.json").write_text(json.dumps({"best": "checkpoints/last.ckpt", "val_loss": None,
                                               "last": "checkpoints/last.ckpt", "epochs_done": 1}))
    return run


def random_careamics_unet(n_channels: int = 4, *, depth: int = 2, features: int = 8, independent: bool = True,
                          n2v2: bool = False, residual: bool = False, final_activation: str = "None",
                          seed: int = 0) -> Any:
    """A CAREamics UNet in eval mode with random weights and random batch-norm statistics (for tests)."""
    import torch
    from careamics.config.architectures import UNetConfig
    from careamics.models import model_factory

    torch.manual_seed(seed)
    net = model_factory(UNetConfig(
        architecture="UNet", conv_dims=2, num_classes=n_channels, in_channels=n_channels, depth=depth,
        num_channels_init=features, independent_channels=independent, n2v2=n2v2, residual=residual,
        final_activation=final_activation))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()
