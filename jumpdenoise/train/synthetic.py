"""Small noisy plates for training tests and benchmarks (not needed by the pipeline).

:func:`noisy_field` draws smooth "cells" with Poisson-Gaussian noise (a signal N2V can
learn); :func:`write_plate` stores given fields as a jumpdenoise OME-Zarr plate (through
:mod:`jumpdenoise.io.ngff`) with plate statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def noisy_field(n_channels: int, size: int, seed: int, *, n_cells: int = 40, photons: float = 20.0,
                read_noise: float = 30.0, offset: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(noisy uint16, clean float32)`` arrays of shape ``(c, size, size)``."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    clean = np.zeros((n_channels, size, size), np.float32)
    for c in range(n_channels):
        for radius in (size / 40, size / 16):  # small and large "cells": blurred impulses
            img = np.zeros((size, size), np.float32)
            ys, xs = rng.integers(0, size, (2, n_cells // 2))
            np.add.at(img, (ys, xs), rng.uniform(0.5, 1.5, n_cells // 2))
            sigma = radius / (1 + 0.3 * c)
            clean[c] += gaussian_filter(img, sigma, mode="wrap") * 2 * np.pi * sigma ** 2 * 100
    signal = rng.poisson(clean * photons / 10) * 10 / photons
    noisy = offset + signal + rng.normal(0, read_noise, clean.shape)
    return np.clip(noisy, 0, 65535).astype(np.uint16), clean + offset


def write_plate(path: str | Path, fields: dict[tuple[str, int], np.ndarray], channels: list[str], *,
                name: str = "SYNTH", statistics: bool = True, overwrite: bool = False) -> Path:
    """Write ``{(well, field): (c, y, x) array}`` as an OME-Zarr plate.

    Parameters
    ----------
    path
        Output ``PLATE.zarr``.
    fields
        Arrays of one shape and dtype, keyed by well id (``"A01"``) and field index.
    channels
        Channel names in ``c`` order.
    statistics
        Also store plate-level per-channel statistics (count, min, max, mean, std).
    """
    from jumpdenoise.config.convert import ConvertConfig
    from jumpdenoise.io.layout import Channel, FieldLayout, PlateLayout, PlaneRef, WellLayout, split_well
    from jumpdenoise.io.ngff import create_plate, write_field, write_statistics

    first = next(iter(fields.values()))
    wells: dict[str, list[int]] = {}
    for w, f in fields:
        wells.setdefault(w, []).append(f)
    well_layouts = []
    for w in sorted(wells):
        row, col = split_well(w)
        flds = [FieldLayout(index=f, site=f + 1, planes={c: PlaneRef(path=f"/synthetic/{w}-{f}-{c}.tif")
                                                        for c in channels}) for f in sorted(wells[w])]
        well_layouts.append(WellLayout(row=row, column=col, fields=flds))
    layout = PlateLayout(name=name, source_kind="hyperstack", source_path="synthetic", n_rows=16, n_columns=24,
                         channels=[Channel(name=c, source_id=str(i)) for i, c in enumerate(channels)],
                         wells=well_layouts, shape=tuple(first.shape[1:]), dtype=str(first.dtype),
                         pixel_size_um=0.6)
    create_plate(path, layout, ConvertConfig(), overwrite=overwrite)
    for (w, f), arr in fields.items():
        write_field(path, w, f, arr)
    if statistics:
        stack = np.stack(list(fields.values())).astype(np.float64)
        qs = [0.1, 1, 50, 99, 99.9]
        plate = {}
        for i, c in enumerate(channels):
            x = stack[:, i]
            plate[c] = {"count": int(x.size), "min": float(x.min()), "max": float(x.max()),
                        "mean": float(x.mean()), "std": float(x.std()),
                        **{f"p{q:g}": float(v) for q, v in zip(qs, np.percentile(x, qs))}}
        write_statistics(path, {"version": 1, "percentiles": qs, "plate": plate, "wells": {}})
    return Path(path)


def synthetic_plate(path: str | Path, *, wells: tuple[str, ...] = ("A01", "A02", "B01"), n_fields: int = 2,
                    channels: tuple[str, ...] = ("DNA", "ER", "RNA", "AGP"), size: int = 128,
                    seed: int = 0, overwrite: bool = False) -> Path:
    """Write a small noisy plate: ``wells`` x ``n_fields`` fields of ``size`` x ``size``."""
    fields = {}
    for i, w in enumerate(wells):
        for f in range(n_fields):
            fields[(w, f)] = noisy_field(len(channels), size, seed * 1000 + i * 10 + f)[0]
    return write_plate(path, fields, list(channels), overwrite=overwrite)
