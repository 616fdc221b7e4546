"""Figures of the evaluation report (matplotlib, Agg; no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from jumpdenoise.plot import _figure, save_figure

COLOURS = {"raw": "#888888", "denoised": "#1f77b4"}


#: Smallest shortfall drawn on the log axes (a shortfall of 0, e.g. size/shape on shared masks, sits here).
FLOOR = 1e-6


def _shortfall(values: pd.Series) -> np.ndarray:
    """``1 - value`` clipped to ``[FLOOR, 1]`` for a log axis (NaN stays NaN)."""
    return np.clip(1.0 - values.to_numpy(float), FLOOR, 1.0)


def families_figure(families: pd.DataFrame, segmentation: pd.DataFrame, reference: str, path: Path) -> None:
    """Per family, ``1 - median r`` with the reference; per object type, ``1 - F1``; per version (log axes).

    Values close to 1 differ in the third or fourth decimal; their shortfall from 1 on a log
    axis shows those differences (lower is closer to the reference).
    """
    fig = _figure((9.0, 3.4))
    ax_fam, ax_seg = fig.subplots(1, 2, width_ratios=[3, 1])
    names = sorted(families.family.unique())
    versions = [v for v in ("raw", "denoised") if v in set(families.version)]
    width = 0.8 / max(1, len(versions))
    for i, version in enumerate(versions):
        sub = families[families.version == version].set_index("family").reindex(names)
        ax_fam.bar(np.arange(len(names)) + i * width, _shortfall(sub.median_r), width, label=version,
                   color=COLOURS.get(version))
    ax_fam.set_xticks(np.arange(len(names)) + width * (len(versions) - 1) / 2, names, rotation=20, fontsize=8)
    ax_fam.set_yscale("log")
    ax_fam.set_ylim(FLOOR, 1.0)
    ax_fam.set_ylabel(f"1 - median r with {reference}")
    ax_fam.legend(fontsize=8)
    ax_fam.set_title(f"per-object features: 1 - correlation with {reference} (lower: closer)", fontsize=9)
    if len(segmentation):
        objs = sorted(segmentation.object.unique())
        for i, version in enumerate(versions):
            sub = segmentation[segmentation.version == version].set_index("object").reindex(objs)
            ax_seg.bar(np.arange(len(objs)) + i * width, _shortfall(sub.f1), width, color=COLOURS.get(version),
                       label=version)
        ax_seg.set_xticks(np.arange(len(objs)) + width * (len(versions) - 1) / 2, objs, fontsize=8)
        ax_seg.set_yscale("log")
        ax_seg.set_ylim(1e-4, 1.0)
        ax_seg.set_title(f"1 - segmentation F1 vs {reference}", fontsize=9)
    save_figure(fig, path, dpi=90)


def masks_figure(versions: dict[str, np.ndarray], nuclei: np.ndarray, cells: np.ndarray, title: str,
                 path: Path, crop: int = 256) -> None:
    """One channel of each version with the shared nucleus (red) and cell (yellow) outlines."""
    from skimage.segmentation import find_boundaries

    h, w = nuclei.shape
    y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
    fig = _figure((3.0 * len(versions), 3.3))
    axes = np.atleast_1d(fig.subplots(1, len(versions)))
    ref = next(iter(versions.values()))[window]
    lo, hi = np.percentile(ref, (0.5, 99.5))
    edges_n, edges_c = find_boundaries(nuclei[window]), find_boundaries(cells[window])
    for ax, (name, plane) in zip(axes, versions.items()):
        rgb = np.clip((plane[window] - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = np.repeat(rgb[..., None], 3, -1)
        rgb[edges_c] = (1.0, 0.85, 0.0)
        rgb[edges_n] = (1.0, 0.1, 0.1)
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=90)
