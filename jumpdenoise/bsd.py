"""The BSD68 Gaussian-denoising protocol of the Noise2Void paper, on jumpdenoise's training and prediction.

Protocol (see ``shared/data/bsd/SOURCE.md``):

1. read 8-bit grayscale PNGs as float32 on the 0..255 scale;
2. add N(0, sigma^2) noise per pixel from a fixed seed, in float, **unclipped**, unrounded;
3. train Noise2Void on the noisy training images only;
4. denoise the noisy test images and score them against the clean ones with PSNR
   (``data_range=255``, i.e. ``10*log10(255^2/MSE)``) and SSIM, per image and averaged.

Reference points on BSD68, sigma 25: noisy input ~20.2 dB, the N2V paper 27.71 dB, the n2v reference
notebook 27.81 dB (27.88 with test-time augmentation), the CAREamics example ~26.3 dB.

When the BSD images are absent, :func:`resolve_bsd_sets` writes stand-in sets cut from scikit-image's
bundled photographs (:func:`jumpdenoise.demo_image.make_synthetic_sets`).

The scores (PSNR/SSIM, :func:`evaluate`, :class:`BsdReport`, the reference PSNRs) live in
:mod:`jumpdenoise.bsd_scores` and are re-exported here.

Heavy libraries (torch, careamics) are imported only inside the functions that train or predict.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from jumpdenoise.bsd_scores import (
    REFERENCE_PSNR,
    BsdImageScore,
    BsdReport,
    evaluate,
    psnr,
    reference_table,
    score_table,
    ssim,
)
from jumpdenoise.errors import ImageError, JumpDenoiseError

__all__ = [
    "REFERENCE_PSNR", "BsdImageScore", "BsdReport", "add_gaussian_noise", "bsd_training_schedule", "denoise_set",
    "dihedral_average", "evaluate", "load_png_folder", "noisy_set", "psnr", "read_png", "reference_table",
    "resolve_bsd_sets", "run_bsd", "score_model", "score_table", "ssim", "train_bsd_model",
]

#: Named schedules: test-set/training-set sizes and keyword arguments of :func:`train_bsd_model`.
#: ``ci``: about a minute on 2 CPU cores (20 images, a small U-Net, more masked pixels per patch so that
#: few steps learn something). ``short``: a quick CPU run on all images. ``full``: the N2V paper's BSD68
#: settings (U-Net depth 2 with 96 initial features, 64x64 patches, batch 128, 400 steps x 200 epochs,
#: lr 4e-4, 0.198 % masked pixels); meant for a GPU.
#: ``budget`` (not in this table: its settings depend on the training device) trains for a given
#: wall time; see :mod:`jumpdenoise.bsd_schedule`.
SCHEDULES: dict[str, dict] = {
    "ci": {"n_train": 20, "n_test": 2, "train": {
        "epochs": 2, "patches_per_epoch": 640, "patch_size": 32, "batch_size": 16, "n_val_patches": 32,
        "model": {"num_channels_init": 16}, "optimizer": {"lr": 1e-3}, "n2v": {"masked_pixel_percentage": 1.5}}},
    "short": {"n_train": None, "n_test": None, "train": {
        "epochs": 10, "patches_per_epoch": 1600, "patch_size": 32, "batch_size": 16, "n_val_patches": 128,
        "model": {"num_channels_init": 32}, "optimizer": {"lr": 1e-3}, "n2v": {"masked_pixel_percentage": 1.5}}},
    "full": {"n_train": None, "n_test": None, "train": {
        "epochs": 200, "patches_per_epoch": 400 * 128, "patch_size": 64, "batch_size": 128, "n_val_patches": 512,
        "model": {"num_channels_init": 96}, "optimizer": {"lr": 4e-4},
        "n2v": {"masked_pixel_percentage": 0.198}}},
}


def bsd_training_schedule(name: str = "short", device: str = "auto", **train_overrides) -> dict:
    """A named schedule (``ci``, ``short``, ``full``, ``budget``): ``{"n_train", "n_test", "train": {...}}``.

    ``train`` holds keyword arguments of :func:`train_bsd_model`; ``train_overrides`` replace or add
    entries there (``None`` values are ignored; dict values such as ``model`` are merged). ``device``
    (``auto``, ``cpu``, ``cuda``) picks the ``budget`` schedule's settings.
    """
    schedules: dict = {**SCHEDULES, "budget": None}
    if name == "budget":
        from jumpdenoise.bsd_schedule import budget_train_settings

        schedules = {**SCHEDULES, "budget": {"n_train": None, "n_test": None, "train": budget_train_settings(device)}}
    base, train = pick_schedule(schedules, name, train_overrides)
    return {"n_train": base["n_train"], "n_test": base["n_test"], "train": train}


def pick_schedule(schedules: dict, name: str, train_overrides: dict) -> tuple[dict, dict]:
    """Return ``(schedules[name], its "train" dict with the overrides applied)``.

    ``None`` overrides are ignored; dict overrides (e.g. ``model``) are merged into dict values.

    Raises
    ------
    JumpDenoiseError
        If ``name`` is not a key of ``schedules``.
    """
    if name not in schedules:
        raise JumpDenoiseError(f"unknown schedule {name!r}; choose one of {sorted(schedules)}")
    base = schedules[name]
    train = {k: dict(v) if isinstance(v, dict) else v for k, v in base["train"].items()}
    for key, value in train_overrides.items():
        if value is None:
            continue
        train[key] = {**train[key], **value} if isinstance(value, dict) and isinstance(train.get(key), dict) else value
    return base, train


# --------------------------------------------------------------------------- reading and noise


def read_png(path: str | Path) -> np.ndarray:
    """Read one 8-bit grayscale PNG as a 2-D float32 array on the 0..255 scale.

    Raises
    ------
    ImageError
        If the file cannot be read or is not a single-channel image.
    """
    from PIL import Image

    p = Path(path)
    try:
        with Image.open(p) as img:
            if img.mode not in ("L", "I;16", "I", "F"):
                raise ImageError(str(p), f"expected a grayscale PNG (mode L), got mode {img.mode}")
            arr = np.asarray(img)
    except ImageError:
        raise
    except Exception as exc:  # PIL raises many kinds
        raise ImageError(str(p), f"cannot read image: {exc}") from exc
    if arr.ndim != 2:
        raise ImageError(str(p), f"expected a 2-D image, got shape {arr.shape}")
    return arr.astype(np.float32)


def load_png_folder(folder: str | Path, limit: int | None = None) -> dict[str, np.ndarray]:
    """Read every ``*.png`` of a folder (sorted by name) as float32 0..255 images.

    Parameters
    ----------
    folder
        Folder of 8-bit grayscale PNGs (e.g. Train400, Set12, BSD68).
    limit
        Read only the first ``limit`` images (by name); ``None`` reads all.

    Returns
    -------
    dict
        File stem -> 2-D float32 array, in name order.
    """
    d = Path(folder)
    if not d.is_dir():
        raise JumpDenoiseError(f"image folder not found: {d}")
    files = sorted(d.glob("*.png"))
    if not files:
        raise JumpDenoiseError(f"no *.png files in {d}")
    if limit is not None:
        if limit < 1:
            raise JumpDenoiseError(f"limit must be >= 1, got {limit}")
        files = files[:limit]
    return {f.stem: read_png(f) for f in files}


def add_gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``image + N(0, sigma^2)`` as float32, unclipped and unrounded (the DnCNN/N2V protocol)."""
    noise = rng.normal(0.0, sigma, image.shape)
    return (np.asarray(image, dtype=np.float64) + noise).astype(np.float32)


def noisy_set(images: Mapping[str, np.ndarray], sigma: float = 25.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Add Gaussian noise to a set of images with one generator seeded once, in name order.

    The same ``(images, sigma, seed)`` always gives the same noisy images.
    """
    if sigma < 0:
        raise JumpDenoiseError(f"sigma must be >= 0, got {sigma}")
    rng = np.random.default_rng(seed)
    return {name: add_gaussian_noise(images[name], sigma, rng) for name in sorted(images)}


# --------------------------------------------------------------------------- test-time augmentation


def dihedral_average(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """Test-time augmentation: average ``predict`` over the 8 flips/rotations of a 2-D image.

    Each transformed image is predicted, transformed back, and the 8 results are averaged.
    """
    acc = np.zeros(image.shape, dtype=np.float64)
    for flip in (False, True):
        base = image[:, ::-1] if flip else image
        for k in range(4):
            out = np.asarray(predict(np.ascontiguousarray(np.rot90(base, k))), dtype=np.float64)
            out = np.rot90(out, -k)
            acc += out[:, ::-1] if flip else out
    return (acc / 8.0).astype(np.float32)


# --------------------------------------------------------------------------- train and predict


def train_bsd_model(noisy_train: Mapping[str, np.ndarray] | Sequence[np.ndarray], run_dir: str | Path, *,
                    epochs: int = 100, patch_size: int = 64, batch_size: int = 128, seed: int = 1,
                    n2v2: bool = False, val_fraction: float = 0.05, trainer: dict | None = None,
                    callbacks: list | None = None, sigma: float | None = None, **overrides) -> Path:
    """Train a 1-channel N2V model on noisy images only; returns the run folder.

    A fraction ``val_fraction`` of the (noisy) training images, at least one when there are two or more,
    is held out as the validation set; with a single image the training module decides. ``callbacks``
    are extra Lightning callbacks (e.g. :class:`~jumpdenoise.bsd_schedule.WallClockCosine`); they need
    two or more images. ``sigma``: the Gaussian noise's standard deviation, when known, for the gain
    estimate on the validation images (default: fitted on them). The model's output offset is
    measured there and removed; its output is not blended with the noisy image, so that the score
    is the network's own, as the N2V protocol scores it and as the exported model reproduces it.
    """
    from jumpdenoise.quality.noise import NoiseVariance
    from jumpdenoise.train.arrays import train_on_arrays

    images = list(noisy_train.values()) if isinstance(noisy_train, Mapping) else list(noisy_train)
    if not images:
        raise JumpDenoiseError("no training images")
    val = None
    if len(images) >= 2 and val_fraction > 0:
        n_val = max(1, int(round(len(images) * val_fraction)))
        images, val = images[:-n_val], images[-n_val:]
    trainer = {"enable_progress_bar": False, **(trainer or {})}  # the run logs one line per epoch
    run_dir = Path(run_dir).resolve()  # absolute: the run folder records checkpoint paths relative to it
    if callbacks and val is None:
        raise JumpDenoiseError("training with callbacks needs two or more images (one held out)")
    noise = {"c0": NoiseVariance(a=0.0, b=float(sigma) ** 2, n_pixels=0)} if sigma is not None else None
    return Path(train_on_arrays(images, run_dir, val_images=val, epochs=epochs, patch_size=patch_size,
                                batch_size=batch_size, n2v2=n2v2, seed=seed, trainer=trainer, callbacks=callbacks,
                                noise_models=noise, blend=False, **overrides))


def denoise_set(model_or_run: object, noisy: Mapping[str, np.ndarray], *, tta: bool = False,
                tile_size: int | None = 256, overlap: int | None = None, batch_size: int = 8,
                device: str = "auto") -> dict[str, np.ndarray]:
    """Denoise every image of ``noisy`` with one model (a run folder, checkpoint or loaded model).

    ``tta=True`` averages the 8 flips/rotations (the predictor's built-in test-time augmentation,
    the same average as :func:`dihedral_average`), 8x the compute. ``device="auto"`` uses a GPU when
    there is one. ``overlap=None`` picks the smallest exact tile overlap for the network.
    """
    from jumpdenoise.predict.arrays import denoise_array
    from jumpdenoise.predict.model import load_model

    model = load_model(model_or_run, device)
    return {name: np.asarray(denoise_array(model, img, tile_size=tile_size, overlap=overlap,
                                           batch_size=batch_size, tta=tta), dtype=np.float32)
            for name, img in noisy.items()}


def run_bsd(train_dir: str | Path, test_dir: str | Path, sigma: float = 25.0, epochs: int | None = None,
            seed: int = 0, tta: bool = False, out_dir: str | Path = "bsd-run", *, schedule_name: str = "short",
            n_train: int | None = None, n_test: int | None = None, device: str = "auto",
            max_minutes: float | None = None, **train_overrides) -> BsdReport:
    """Run the whole BSD protocol: noisy train set -> N2V -> denoise noisy test set -> PSNR/SSIM.

    Parameters
    ----------
    train_dir, test_dir
        Folders of clean 8-bit grayscale PNGs (e.g. Train400 and BSD68 or Set12).
    sigma
        Standard deviation of the Gaussian noise on the 0..255 scale.
    epochs
        Training epochs (default: the schedule's).
    seed
        Seed of the noise; the test set uses ``seed + 1`` so train and test noise differ.
    tta
        Average predictions over the 8 flips/rotations.
    out_dir
        Output folder: ``model/`` (the run folder, with ``curves.csv``), ``bsd_scores.csv``,
        ``bsd_summary.json``.
    schedule_name
        ``ci``, ``short``, ``full`` (:data:`SCHEDULES`) or ``budget`` (:mod:`jumpdenoise.bsd_schedule`).
    n_train, n_test
        Use only the first N images of each folder (default: the schedule's; ``None`` there = all).
    device
        Prediction device (``auto``: a GPU when there is one); also picks the budget schedule's settings.
    max_minutes
        Stop training after this many minutes of wall time (the best model so far is used). Required
        by the ``budget`` schedule, whose learning rate decays to zero at this deadline.
    train_overrides
        Replace entries of the schedule's training settings (``patch_size``, ``batch_size``, ``n2v2``,
        ``trainer``, ``model``, ``patches_per_epoch``...; see :func:`train_bsd_model`).

    Raises
    ------
    JumpDenoiseError
        If the ``budget`` schedule is asked for without ``max_minutes``.
    """
    from jumpdenoise.bsd_schedule import with_deadline

    settings = bsd_training_schedule(schedule_name, device=device, epochs=epochs, **train_overrides)
    train_kwargs = with_deadline(settings["train"], schedule_name, max_minutes)
    n_train = n_train if n_train is not None else settings["n_train"]
    n_test = n_test if n_test is not None else settings["n_test"]
    out = Path(out_dir)
    clean_train = load_png_folder(train_dir, n_train)
    clean_test = load_png_folder(test_dir, n_test)
    noisy_train = noisy_set(clean_train, sigma, seed)
    noisy_test = noisy_set(clean_test, sigma, seed + 1)
    t0 = time.perf_counter()
    run_dir = train_bsd_model(noisy_train, out / "model", sigma=sigma, **train_kwargs)
    t1 = time.perf_counter()
    denoised = denoise_set(run_dir, noisy_test, tta=tta, device=device)
    t2 = time.perf_counter()
    best = run_dir / "best.json"
    epochs_done = json.loads(best.read_text()).get("epochs_done") if best.is_file() else None
    details = {"schedule": schedule_name, "max_minutes": max_minutes, "model": str(run_dir),
               "train_settings": {k: v for k, v in train_kwargs.items() if k != "callbacks"}}
    report = BsdReport(scores=evaluate(clean_test, noisy_test, denoised), sigma=sigma, seed=seed, tta=tta,
                       epochs=epochs_done if epochs_done is not None else train_kwargs["epochs"],
                       n_train=len(noisy_train), run_dir=run_dir, train_seconds=t1 - t0, predict_seconds=t2 - t1,
                       details=details,
                       images={n: {"clean": clean_test[n], "noisy": noisy_test[n], "denoised": denoised[n]}
                               for n in clean_test})
    report.save(out)
    return report


def score_model(model: str | Path, test_dir: str | Path, sigma: float = 25.0, seed: int = 0, tta: bool = False,
                out_dir: str | Path | None = None, *, n_test: int | None = None, device: str = "auto") -> BsdReport:
    """Score a trained model on a folder of clean PNGs, without training.

    The test images get the same seeded noise as in :func:`run_bsd` (``seed + 1``), so a model trained
    there and scored here on the same folder gets the same scores.

    Parameters
    ----------
    model
        BioImage Model Zoo ``.zip``, run folder or checkpoint of a 1-channel model.
    test_dir
        Folder of clean 8-bit grayscale PNGs (e.g. BSD68).
    sigma, seed, tta, n_test, device
        As in :func:`run_bsd`.
    out_dir
        Where ``bsd_scores.csv`` and ``bsd_summary.json`` go (``None``: nowhere).
    """
    from jumpdenoise.predict.model import load_model

    clean = load_png_folder(test_dir, n_test)
    noisy = noisy_set(clean, sigma, seed + 1)
    t0 = time.perf_counter()
    loaded = load_model(model, device)
    if loaded.n_channels != 1:
        raise JumpDenoiseError(f"model {model} has {loaded.n_channels} channels; the BSD images have 1")
    denoised = denoise_set(loaded, noisy, tta=tta, device=device)
    report = BsdReport(scores=evaluate(clean, noisy, denoised), sigma=sigma, seed=seed, tta=tta, epochs=0,
                       n_train=0, run_dir=None, train_seconds=0.0, predict_seconds=time.perf_counter() - t0,
                       details={"model": str(model), "test": str(test_dir)},
                       images={n: {"clean": clean[n], "noisy": noisy[n], "denoised": denoised[n]} for n in clean})
    if out_dir is not None:
        report.save(out_dir)
    return report


# --------------------------------------------------------------------------- data when shared/ is absent


def resolve_bsd_sets(data_root: str | Path | None, work_dir: str | Path, *, test_dir: str | Path | None = None,
                     train_name: str = "train400", test_name: str = "set12") -> tuple[Path, Path, str]:
    """Find ``<data_root>/bsd/{train400,set12}``; when absent, write stand-in sets under ``work_dir``.

    ``test_dir`` (e.g. a BSD68 folder) replaces the default test set; it must exist.
    Returns ``(train_dir, test_dir, origin)`` where ``origin`` is ``"shared"`` or ``"synthetic"``.
    """
    if test_dir is not None and not Path(test_dir).is_dir():
        raise JumpDenoiseError(f"test folder not found: {test_dir}")
    if data_root is not None:
        train, test = Path(data_root) / "bsd" / train_name, Path(data_root) / "bsd" / test_name
        if train.is_dir() and (test.is_dir() or test_dir is not None):
            return train, Path(test_dir) if test_dir is not None else test, "shared"
    from jumpdenoise.demo_image import make_synthetic_sets

    train, test = make_synthetic_sets(Path(work_dir) / "synthetic_bsd")
    return train, Path(test_dir) if test_dir is not None else test, "synthetic"
