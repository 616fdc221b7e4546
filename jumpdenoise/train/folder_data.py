"""Train N2V on a folder of 2-D images (PNG, TIFF, JPEG; grayscale or multichannel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jumpdenoise.errors import ConfigError, ImageError

SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def read_image(path: str | Path) -> np.ndarray:
    """Read one 2-D image as ``(c, y, x)``.

    TIFF: ``YX``, ``CYX``, or ``YXC`` when the last axis has at most 4 entries and the first
    more. PNG/JPEG: grayscale, or RGB(A) (alpha dropped).

    Raises
    ------
    ImageError
        If the file cannot be read or is not a 2-D image.
    """
    p = Path(path)
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            a = tifffile.imread(p)
        else:
            from PIL import Image

            with Image.open(p) as im:
                a = np.asarray(im)
    except Exception as exc:  # any reader failure names the file
        raise ImageError(str(p), f"cannot read image ({exc})") from None
    a = np.squeeze(a)
    if a.ndim == 2:
        return a[None]
    if a.ndim == 3:
        if a.shape[-1] <= 4 < a.shape[0]:
            if p.suffix.lower() not in (".tif", ".tiff") and a.shape[-1] == 4:
                a = a[..., :3]
            return np.moveaxis(a, -1, 0)
        return a
    raise ImageError(str(p), f"not a 2-D image (shape {a.shape})")


def read_image_folder(folder: str | Path, pattern: str = "*") -> list[np.ndarray]:
    """Read every image of ``folder`` matching ``pattern`` (sorted by name) as ``(c, y, x)``.

    Raises
    ------
    ConfigError
        If the folder is missing or holds no image.
    """
    d = Path(folder)
    if not d.is_dir():
        raise ConfigError(f"image folder not found: {d}")
    files = sorted(p for p in d.glob(pattern) if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(f"{d}: no image ({', '.join(SUFFIXES)}) matches {pattern!r}")
    return [read_image(p) for p in files]


def train_on_folder(folder: str | Path, run_dir: str | Path, *, val_folder: str | Path | None = None,
                    pattern: str = "*", **kwargs: Any) -> Path:
    """Train N2V on the images of ``folder`` (see :func:`~jumpdenoise.train.arrays.train_on_arrays`).

    Parameters
    ----------
    folder
        Training images.
    run_dir
        Run folder.
    val_folder
        Validation images (default: images held out from ``folder``).
    pattern
        Glob pattern of the files to use.
    **kwargs
        Passed to :func:`~jumpdenoise.train.arrays.train_on_arrays`.
    """
    from jumpdenoise.train.arrays import train_on_arrays

    images = read_image_folder(folder, pattern)
    vals = read_image_folder(val_folder, pattern) if val_folder is not None else None
    return train_on_arrays(images, run_dir, val_images=vals, **kwargs)
