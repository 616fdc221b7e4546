"""Single-image Noise2Void demo, and the sample data of the notebooks.

The demo (``notebooks/single_image_demo.ipynb``): one image, noise added, a model trained on that
image alone, in a few minutes on a laptop CPU. The default image is scikit-image's bundled ``camera``
photograph (512x512, 8-bit; no network needed).

The notebooks' sample data: stand-in BSD-like image folders (:func:`make_synthetic_sets`) and the JUMP
notebook's source plate (:func:`jump_source`: the real cpg0000 field when present, else a generated plate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jumpdenoise.bsd import add_gaussian_noise, psnr, ssim
from jumpdenoise.errors import JumpDenoiseError

__all__ = ["DemoResult", "demo_image", "denoise_demo", "image_training_schedule", "jump_overrides", "jump_source",
           "make_noisy", "make_synthetic_sets", "noisy_vs_denoised_table", "run_image_demo", "train_demo"]

#: Named schedules: ``size`` (centred crop, None = whole image) and ``train`` (keyword arguments of
#: :func:`train_demo`). ``ci`` takes about a minute on 2 CPU cores; ``laptop`` a few minutes on a laptop
#: CPU; ``full`` longer, with the N2V paper's 64x64 patches. Short schedules mask more pixels per patch
#: (1.5 %) so that few steps learn something.
SCHEDULES: dict[str, dict] = {
    "ci": {"size": 128, "train": {
        "epochs": 3, "patches_per_epoch": 320, "patch_size": 32, "batch_size": 16, "n_val_patches": 16,
        "model": {"num_channels_init": 16}, "optimizer": {"lr": 1e-3}, "n2v": {"masked_pixel_percentage": 1.5}}},
    "laptop": {"size": None, "train": {
        "epochs": 15, "patches_per_epoch": 640, "patch_size": 32, "batch_size": 16, "n_val_patches": 64,
        "model": {"num_channels_init": 32}, "optimizer": {"lr": 1e-3}, "n2v": {"masked_pixel_percentage": 1.5}}},
    "full": {"size": None, "train": {
        "epochs": 50, "patches_per_epoch": 1280, "patch_size": 64, "batch_size": 32, "n_val_patches": 128,
        "model": {"num_channels_init": 32}, "optimizer": {"lr": 4e-4}, "n2v": {"masked_pixel_percentage": 0.5}}},
}


def image_training_schedule(name: str = "laptop", **train_overrides) -> dict:
    """A named schedule (``ci``, ``laptop``, ``full``): ``{"size", "train": {...}}``, ``None`` overrides ignored."""
    from jumpdenoise.bsd import pick_schedule

    base, train = pick_schedule(SCHEDULES, name, train_overrides)
    return {"size": base["size"], "train": train}


def demo_image(name: str = "camera", size: int | None = None) -> np.ndarray:
    """A clean 2-D float32 image on 0..255 from scikit-image's bundled data (``camera``, ``moon``, ...).

    ``size`` keeps a centred ``size x size`` crop (smaller is faster to train and predict).
    """
    import skimage.data
    from skimage.color import rgb2gray

    try:
        img = getattr(skimage.data, name)()
    except AttributeError:
        raise JumpDenoiseError(f"skimage.data has no image {name!r}") from None
    img = np.asarray(img, np.float64)
    if img.ndim == 3:
        img = rgb2gray(img[..., :3] / 255.0) * 255.0
    if size is not None:
        h, w = img.shape
        s = min(size, h, w)
        y, x = (h - s) // 2, (w - s) // 2
        img = img[y:y + s, x:x + s]
    return np.ascontiguousarray(img, dtype=np.float32)


def make_noisy(clean: np.ndarray, sigma: float = 25.0, seed: int = 0) -> np.ndarray:
    """``clean + N(0, sigma^2)``, float32, unclipped (as in the BSD protocol)."""
    return add_gaussian_noise(clean, sigma, np.random.default_rng(seed))


def train_demo(noisy: np.ndarray, run_dir: str | Path, *, epochs: int = 15, patch_size: int = 32,
               batch_size: int = 16, seed: int = 1, trainer: dict | None = None, **overrides) -> Path:
    """Train N2V on the single noisy image (no clean image involved); returns the run folder.

    ``overrides`` go to :func:`jumpdenoise.train.arrays.train_on_arrays` (``model``, ``n2v``, ...). A band of
    the image's rows is held out for validation.
    """
    from jumpdenoise.train.arrays import train_on_arrays

    trainer = {"enable_progress_bar": False, **(trainer or {})}
    run_dir = Path(run_dir).resolve()  # absolute: the run folder records checkpoint paths relative to it
    return Path(train_on_arrays([noisy], run_dir, epochs=epochs, patch_size=patch_size, batch_size=batch_size,
                                seed=seed, trainer=trainer, **overrides))


def denoise_demo(run_dir: str | Path, noisy: np.ndarray, *, tta: bool = False) -> np.ndarray:
    """Denoise the noisy image with the trained model (float32, same shape)."""
    from jumpdenoise.bsd import denoise_set

    return denoise_set(run_dir, {"image": noisy}, tta=tta)["image"]


def noisy_vs_denoised_table(clean: np.ndarray, noisy: np.ndarray, denoised: np.ndarray):
    """PSNR (dB, range 255) and SSIM of the noisy and the denoised image, and the gain, as a DataFrame."""
    import pandas as pd

    p_noisy, p_den = psnr(clean, noisy), psnr(clean, denoised)
    return pd.DataFrame({"PSNR (dB)": [p_noisy, p_den, p_den - p_noisy],
                         "SSIM": [ssim(clean, noisy), ssim(clean, denoised), np.nan]},
                        index=["noisy", "denoised", "gain"]).round(3)


@dataclass
class DemoResult:
    """Everything the demo shows: the three images, their scores, timings and the run folder."""

    clean: np.ndarray
    noisy: np.ndarray
    denoised: np.ndarray
    run_dir: Path
    train_seconds: float
    predict_seconds: float

    @property
    def noisy_psnr(self) -> float:
        """PSNR (dB, range 255) of the noisy image."""
        return psnr(self.clean, self.noisy)

    @property
    def denoised_psnr(self) -> float:
        """PSNR (dB, range 255) of the denoised image."""
        return psnr(self.clean, self.denoised)

    @property
    def psnr_gain(self) -> float:
        """Denoised minus noisy PSNR (dB)."""
        return self.denoised_psnr - self.noisy_psnr

    def summary(self) -> dict:
        """Scores and timings as a dict (for a table)."""
        return {"noisy PSNR (dB)": round(self.noisy_psnr, 2), "denoised PSNR (dB)": round(self.denoised_psnr, 2),
                "PSNR gain (dB)": round(self.psnr_gain, 2), "noisy SSIM": round(ssim(self.clean, self.noisy), 3),
                "denoised SSIM": round(ssim(self.clean, self.denoised), 3),
                "training (s)": round(self.train_seconds, 1), "prediction (s)": round(self.predict_seconds, 1)}


def run_image_demo(out_dir: str | Path = "single-image-demo", *, image: np.ndarray | str = "camera",
             schedule_name: str = "laptop", sigma: float = 25.0, seed: int = 0, tta: bool = False,
             **train_overrides) -> DemoResult:
    """The whole demo: clean image -> noisy -> N2V trained on it alone -> denoised, with timings.

    ``image`` is an array (0..255) or the name of a scikit-image sample image (cropped to the schedule's
    ``size``); ``train_overrides`` replace entries of the schedule's training settings.
    """
    settings = image_training_schedule(schedule_name, **train_overrides)
    clean = demo_image(image, settings["size"]) if isinstance(image, str) else np.asarray(image, np.float32)
    noisy = make_noisy(clean, sigma, seed)
    t0 = time.perf_counter()
    run_dir = train_demo(noisy, Path(out_dir) / "model", seed=seed + 1, **settings["train"])
    t1 = time.perf_counter()
    denoised = denoise_demo(run_dir, noisy, tta=tta)
    return DemoResult(clean=clean, noisy=noisy, denoised=denoised, run_dir=run_dir, train_seconds=t1 - t0,
                      predict_seconds=time.perf_counter() - t1)


_SOURCES_TRAIN = ("camera", "coins", "moon", "page", "astronaut", "chelsea", "coffee", "brick", "grass")
_SOURCES_TEST = ("text", "rocket", "clock", "gravel")


def make_synthetic_sets(out_dir: str | Path, n_train: int = 20, n_test: int = 3, train_size: int = 180,
                        test_size: int = 256, seed: int = 0) -> tuple[Path, Path]:
    """Write stand-in train/test folders of 8-bit PNG crops of scikit-image's bundled photographs.

    Used when the BSD images are absent (no network needed). Train crops and test crops come from
    different photographs. Returns ``(train_dir, test_dir)``.
    """
    from PIL import Image

    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    result = []
    for sub, sources, n, size in (("train", _SOURCES_TRAIN, n_train, train_size),
                                  ("test", _SOURCES_TEST, n_test, test_size)):
        d = out / sub
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.clip(np.rint(demo_image(sources[i % len(sources)])), 0, 255).astype(np.uint8)
            s = min(size, *img.shape)
            y = int(rng.integers(0, img.shape[0] - s + 1))
            x = int(rng.integers(0, img.shape[1] - s + 1))
            Image.fromarray(img[y:y + s, x:x + s]).save(d / f"{sub}_{i + 1:03d}.png")
        result.append(d)
    return result[0], result[1]


# --------------------------------------------------------------------------- the JUMP notebook's plate

#: Training settings of the JUMP notebook per schedule (merged over ``configs/n2v_jump.yaml``'s ``train``);
#: ``full`` keeps the configuration file's own settings.
JUMP_SCHEDULES: dict[str, dict] = {
    "ci": {"patch_size": 32, "batch_size": 8, "epochs": 2, "patches_per_epoch": 96, "n_val_patches": 32,
           "model": {"num_channels_init": 8}, "optimizer": {"lr": 2e-3}, "n2v": {"masked_pixel_percentage": 2.0},
           "trainer": {"accelerator": "cpu", "devices": 1, "num_workers": 0, "enable_progress_bar": False}},
    "short": {"patch_size": 64, "batch_size": 16, "epochs": 10, "patches_per_epoch": 640, "n_val_patches": 64,
              "model": {"num_channels_init": 16}, "optimizer": {"lr": 1e-3}, "n2v": {"masked_pixel_percentage": 1.0},
              "trainer": {"devices": 1, "num_workers": 0, "enable_progress_bar": False}},
    "full": {},
}

CPG0000_FIELD = ("jump", "cpg0000_BR00117010")


def jump_source(data_root: str | Path | None, work_dir: str | Path) -> tuple[dict, str]:
    """The JUMP notebook's source plate as a ``source`` config section, and where it comes from.

    The real cpg0000 field (``<data_root>/jump/cpg0000_BR00117010``: six 1080x1080 Phenix TIFFs, channel
    names from its ``channel_table.json``) when present; otherwise a small generated plate (Phenix
    layout, 1 x 2 wells, 2 fields, 256x256, channels DNA ER RNA AGP Mito) written under ``work_dir``.
    Returns ``(source, origin)`` with ``origin`` ``"cpg0000"`` or ``"generated"``.
    """
    if data_root is not None:
        field_dir = Path(data_root).joinpath(*CPG0000_FIELD)
        if (field_dir / "Images").is_dir() and (field_dir / "channel_table.json").is_file():
            return {"kind": "phenix", "path": str((field_dir / "Images").resolve()),
                    "channel_map_file": str((field_dir / "channel_table.json").resolve()),
                    "plate_name": "BR00117010"}, "cpg0000"
    from jumpdenoise.io.synthetic import generate_plate

    images = generate_plate(Path(work_dir).resolve() / "generated_source", plate_name="GENERATED", rows=1,
                            columns=2, fields=2, channels=("DNA", "ER", "RNA", "AGP", "Mito"), size=(256, 256),
                            seed=0, ground_truth=False)
    return {"kind": "phenix", "path": str(images)}, "generated"


def jump_overrides(source: dict, work_dir: str | Path, schedule_name: str = "short") -> dict:
    """Config overrides of the JUMP notebook: its source, outputs in ``work_dir``, a local executor, and the
    schedule's training settings (:data:`JUMP_SCHEDULES`). Reruns replace converted and denoised plates."""
    if schedule_name not in JUMP_SCHEDULES:
        raise JumpDenoiseError(f"unknown schedule {schedule_name!r}; choose one of {sorted(JUMP_SCHEDULES)}")
    work = Path(work_dir).resolve()
    return {"source": source, "paths": {"workdir": str(work)}, "convert": {"overwrite": True},
            "predict": {"overwrite": True}, "executor": {"kind": "local", "workers": 1},
            "train": JUMP_SCHEDULES[schedule_name]}
