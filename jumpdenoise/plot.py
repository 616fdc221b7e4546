"""Figures for the notebooks and reports (matplotlib, Agg backend, no display needed).

Every function returns a :class:`matplotlib.figure.Figure` and, when ``save`` is given, also writes it
as a PNG of exactly ``figsize * dpi`` pixels (no tight bounding box, so the size is predictable).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["before_after", "comparison_rows", "crop_panels", "image_grid", "plate_before_after", "plate_channels", "save_figure",
           "statistics_table", "table_figure", "training_curves", "triptych"]


def _figure(figsize: tuple[float, float]):
    """A new Figure not registered with pyplot (works with any backend, never opens a window)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def save_figure(fig, path: str | Path | None, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG at ``dpi`` (parent folders are created); does nothing when ``path`` is None."""
    if path is None:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi, format="png")


def _as_cyx(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected a (y, x) or (c, y, x) image, got shape {arr.shape}")
    return arr


def _limits(image: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    lo, hi = np.percentile(np.asarray(image, np.float64), percentiles)
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _default_crop(shape: tuple[int, int], crop_size: int) -> tuple[int, int, int, int]:
    h, w = shape
    s = min(crop_size, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return y, x, s, s


def before_after(raw: np.ndarray, denoised: np.ndarray, channel_names: Sequence[str] | None = None, *,
                 crop: tuple[int, int, int, int] | None = None, crop_size: int = 128,
                 percentiles: tuple[float, float] = (0.5, 99.5), vrange: tuple[float, float] | None = None,
                 titles: tuple[str, str] = ("raw", "denoised"),
                 panel_size: float = 3.0, cmap: str = "gray", save: str | Path | None = None,
                 dpi: int = 100):
    """Raw vs denoised, one row per channel: full field side by side, then a zoomed crop of each.

    Parameters
    ----------
    raw, denoised
        Images ``(y, x)`` or ``(c, y, x)`` of the same shape.
    channel_names
        One name per channel (row labels); default ``ch0, ch1, ...``.
    crop
        ``(y, x, height, width)`` of the zoomed region; default a centred ``crop_size`` square.
    percentiles
        Display range per channel, computed on the raw image and shared by both panels.
    vrange
        A fixed display range for every channel instead (e.g. ``(0, 255)``).
    panel_size
        Inches per panel; the figure is ``4 * panel_size`` wide and ``C * panel_size`` tall.
    """
    from matplotlib.patches import Rectangle

    r, d = _as_cyx(raw), _as_cyx(denoised)
    if r.shape != d.shape:
        raise ValueError(f"raw {r.shape} and denoised {d.shape} differ in shape")
    n_c = r.shape[0]
    names = list(channel_names) if channel_names is not None else [f"ch{i}" for i in range(n_c)]
    if len(names) != n_c:
        raise ValueError(f"{len(names)} channel names for {n_c} channels")
    y, x, h, w = crop if crop is not None else _default_crop(r.shape[1:], crop_size)
    fig = _figure((4 * panel_size, n_c * panel_size))
    axes = np.atleast_2d(fig.subplots(n_c, 4, squeeze=False))
    for c in range(n_c):
        vmin, vmax = vrange if vrange is not None else _limits(r[c], percentiles)
        panels = (r[c], d[c], r[c, y:y + h, x:x + w], d[c, y:y + h, x:x + w])
        labels = (titles[0], titles[1], f"{titles[0]} (zoom)", f"{titles[1]} (zoom)")
        for j, (img, label) in enumerate(zip(panels, labels)):
            ax = axes[c, j]
            ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(label)
            if j < 2:
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="yellow", lw=1.2))
        axes[c, 0].set_ylabel(names[c], fontsize=12)
    save_figure(fig, save, dpi)
    return fig


def _psnr(clean: np.ndarray, estimate: np.ndarray) -> float:
    from jumpdenoise.bsd import psnr

    return psnr(clean, estimate)


def _panel(ax, img: np.ndarray, title: str, vmin: float, vmax: float, fontsize: int = 13) -> None:
    ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def _plate_field(plate, well: int | str, field: int | str):
    """One field ``(c, y, x)`` of an :func:`jumpdenoise.open_plate` DataArray (well/field by index or label)."""
    sel = plate.isel(well=well) if isinstance(well, int) else plate.sel(well=well)
    return sel.isel(field=field) if isinstance(field, int) else sel.sel(field=field)


def plate_channels(plate, *, well: int | str = 0, field: int | str = 0, percentiles: tuple[float, float] = (0.5, 99.5),
                   columns: int = 3, panel_size: float = 3.5, save: str | Path | None = None, dpi: int = 100):
    """Every channel of one field of a plate (an :func:`jumpdenoise.open_plate` DataArray), titled by name.

    ``well`` / ``field``: an index or a label (``"A01"``). The figure is ``columns * panel_size`` by
    ``rows * panel_size`` inches.
    """
    one = _plate_field(plate, well, field)
    data = np.asarray(one.values)
    images = {str(ch): data[i] for i, ch in enumerate(one.c.values)}
    fig = image_grid(images, n=len(images), columns=columns, vrange=None, panel_size=panel_size)
    fig.suptitle(f"{plate.name or 'plate'}: well {one.well.item()}, field {one.field.item()}")
    save_figure(fig, save, dpi)
    return fig


def plate_before_after(raw, denoised, *, well: int | str = 0, field: int | str = 0,
                       save: str | Path | None = None, dpi: int = 100, **kwargs):
    """:func:`before_after` for one field of a raw and a denoised plate (DataArrays of ``open_plate``).

    The channels shown are the denoised plate's, taken by name from the raw plate. ``kwargs`` go to
    :func:`before_after` (``crop``, ``crop_size``, ``panel_size``, ...).
    """
    den = _plate_field(denoised, well, field)
    names = [str(c) for c in den.c.values]
    raw_field = _plate_field(raw.sel(c=names), den.well.item(), den.field.item())
    return before_after(np.asarray(raw_field.values), np.asarray(den.values), names, save=save, dpi=dpi, **kwargs)


def triptych(noisy: np.ndarray, denoised: np.ndarray, clean: np.ndarray | None = None, *,
             titles: Sequence[str] | None = None, show_psnr: bool = True,
             vrange: tuple[float, float] | None = (0.0, 255.0), panel_size: float = 4.0,
             suptitle: str | None = None, save: str | Path | None = None, dpi: int = 100):
    """Noisy / denoised / clean side by side (clean optional), same grey scale on every panel.

    With a clean image and ``show_psnr``, the noisy and denoised titles carry their PSNR (dB, range 255).
    ``vrange`` fixes the display range (default 0..255 for 8-bit images); ``None`` uses the clean (or
    noisy) image's 0.5-99.5 percentiles. The figure is ``n * panel_size`` by ``panel_size`` inches
    (``+ 0.4`` with a ``suptitle``).
    """
    images = [np.asarray(noisy), np.asarray(denoised)] + ([np.asarray(clean)] if clean is not None else [])
    names = list(titles) if titles is not None else ["noisy", "denoised", "clean"][: len(images)]
    if len(names) != len(images):
        raise ValueError(f"{len(names)} titles for {len(images)} images")
    if clean is not None and show_psnr:
        names = [f"{names[0]} ({_psnr(clean, noisy):.2f} dB)", f"{names[1]} ({_psnr(clean, denoised):.2f} dB)",
                 names[2]]
    vmin, vmax = vrange if vrange is not None else _limits(images[-1], (0.5, 99.5))
    fig = _figure((len(images) * panel_size, panel_size + (0.4 if suptitle else 0.0)))
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    for ax, img, name in zip(axes, images, names):
        _panel(ax, img, name, vmin, vmax)
    if suptitle:
        fig.suptitle(suptitle, fontsize=14)
    save_figure(fig, save, dpi)
    return fig


def crop_panels(raw: np.ndarray, denoised: np.ndarray, truth: np.ndarray | None = None, *,
                titles: Sequence[str] = ("raw", "denoised", "truth"), crop_size: int = 192,
                percentiles: tuple[float, float] = (0.5, 99.5), panel_size: float = 3.5,
                suptitle: str | None = None, save: str | Path | None = None, dpi: int = 100):
    """Centre crops of a raw, a denoised and (optionally) a true 2-D plane side by side, one display range.

    The range is the ``percentiles`` of the truth crop (of the raw crop without truth), so the
    panels compare like for like. ``titles`` gives one title per panel shown (extra ones are
    ignored). The figure is ``n * panel_size`` by ``panel_size`` inches (``+ 0.4`` with a ``suptitle``).
    """
    planes = [np.asarray(raw), np.asarray(denoised)] + ([np.asarray(truth)] if truth is not None else [])
    shapes = {p.shape for p in planes}
    if len(shapes) != 1 or planes[0].ndim != 2:
        raise ValueError(f"crop_panels takes 2-D planes of one shape, got {[p.shape for p in planes]}")
    y, x, h, w = _default_crop(planes[0].shape, crop_size)
    crops = [p[y:y + h, x:x + w] for p in planes]
    vrange = _limits(crops[-1] if truth is not None else crops[0], percentiles)
    return triptych(*crops, titles=list(titles)[: len(crops)], show_psnr=False, vrange=vrange,
                    panel_size=panel_size, suptitle=suptitle, save=save, dpi=dpi)


def comparison_rows(noisy: Mapping[str, np.ndarray], denoised: Mapping[str, np.ndarray],
                    clean: Mapping[str, np.ndarray], *, names: Sequence[str] | None = None, max_rows: int = 3,
                    vrange: tuple[float, float] = (0.0, 255.0), panel_size: float = 3.5,
                    save: str | Path | None = None, dpi: int = 100):
    """One noisy / denoised / clean row per image (first ``max_rows`` of ``names``), PSNR in the titles.

    The figure is ``3 * panel_size`` by ``rows * panel_size`` inches.
    """
    keys = list(names) if names is not None else list(clean)[:max_rows]
    if not keys:
        raise ValueError("no images to show")
    fig = _figure((3 * panel_size, len(keys) * panel_size))
    axes = fig.subplots(len(keys), 3, squeeze=False)
    for row, key in zip(axes, keys):
        c = clean[key]
        _panel(row[0], noisy[key], f"{key} noisy ({_psnr(c, noisy[key]):.2f} dB)", *vrange, fontsize=11)
        _panel(row[1], denoised[key], f"denoised ({_psnr(c, denoised[key]):.2f} dB)", *vrange, fontsize=11)
        _panel(row[2], c, "clean", *vrange, fontsize=11)
    save_figure(fig, save, dpi)
    return fig


def image_grid(images: Mapping[str, np.ndarray], *, n: int = 4, columns: int = 4,
               vrange: tuple[float, float] | None = (0.0, 255.0), panel_size: float = 3.0,
               save: str | Path | None = None, dpi: int = 100):
    """The first ``n`` images of a mapping in a grid, titled by name.

    The figure is ``columns * panel_size`` by ``rows * panel_size`` inches.
    """
    keys = list(images)[:n]
    if not keys:
        raise ValueError("no images to show")
    cols = min(columns, len(keys))
    rows = -(-len(keys) // cols)
    fig = _figure((cols * panel_size, rows * panel_size))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, key in zip(axes, keys):
        lo, hi = vrange if vrange is not None else _limits(images[key], (0.5, 99.5))
        _panel(ax, images[key], key, lo, hi, fontsize=11)
    for ax in axes[len(keys):]:
        ax.axis("off")
    save_figure(fig, save, dpi)
    return fig


def _read_curves(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no rows")
    cols: dict[str, np.ndarray] = {}
    for key in rows[0]:
        vals = []
        for row in rows:
            try:
                vals.append(float(row[key]) if row[key] not in ("", None) else np.nan)
            except ValueError:
                vals.append(np.nan)
        cols[key] = np.asarray(vals)
    return cols


def training_curves(run: str | Path, *, figsize: tuple[float, float] = (8.0, 4.0),
                    save: str | Path | None = None, dpi: int = 100):
    """Loss curves (every ``*loss*`` column) per epoch from a run folder's ``curves.csv`` (or that file).

    A learning-rate column (``lr``, ``learning_rate``, ``lr_*``), when present, is drawn on a second y axis.
    """
    p = Path(run)
    path = p / "curves.csv" if p.is_dir() else p
    if not path.is_file():
        raise FileNotFoundError(f"training curves not found: {path}")
    cols = _read_curves(path)
    x_key = next((k for k in ("epoch", "step") if k in cols), None)
    n = len(next(iter(cols.values())))
    x = cols[x_key] if x_key else np.arange(n)
    fig = _figure(figsize)
    ax = fig.subplots()
    for key in [k for k in cols if "loss" in k.lower()]:
        ok = np.isfinite(cols[key])
        if ok.any():
            ax.plot(x[ok], cols[key][ok], marker="o", ms=3, label=key)
    ax.set_xlabel(x_key or "row")
    ax.set_ylabel("N2V loss (masked-pixel MSE)")
    ax.grid(alpha=0.3)
    lr_key = next((k for k in cols if k.lower() in ("lr", "learning_rate") or "lr" in k.lower().split("_")), None)
    if lr_key is not None and np.isfinite(cols[lr_key]).any():
        ax2 = ax.twinx()
        ok = np.isfinite(cols[lr_key])
        ax2.plot(x[ok], cols[lr_key][ok], color="grey", ls="--", label=lr_key)
        ax2.set_ylabel("learning rate")
        ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    ax.set_title("training curves")
    save_figure(fig, save, dpi)
    return fig


def _fmt(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not np.isfinite(v):
            return str(v)
        if v.is_integer() and abs(v) < 1e12:
            return str(int(v))
        return f"{v:.1f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(value)


def table_figure(rows: Sequence[Mapping[str, object]], *, title: str | None = None,
                 columns: Sequence[str] | None = None, figsize: tuple[float, float] | None = None,
                 save: str | Path | None = None, dpi: int = 100):
    """Draw a list of row dicts as a table figure (first column bold; whole numbers as integers, others to
    4 significant digits or one decimal)."""
    if not rows:
        raise ValueError("table_figure needs at least one row")
    cols = list(columns) if columns is not None else list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    size = figsize or (max(4.0, 1.2 * len(cols)), 0.8 + 0.35 * (len(rows) + 1))
    fig = _figure(size)
    ax = fig.subplots()
    ax.axis("off")
    tbl = ax.table(cellText=cells, colLabels=cols, loc="center", cellLoc="center")
    tbl.auto_set_font_size(False)
    tbl.set_fontsize(9)
    for (row, col), cell in tbl.get_celld().items():
        if row == 0 or col == 0:
            cell.set_text_props(weight="bold")
    if title:
        ax.set_title(title)
    save_figure(fig, save, dpi)
    return fig


def statistics_table(statistics: Mapping, *, keys: Sequence[str] = ("count", "min", "p1", "p50", "mean", "std",
                                                                        "p99", "max"),
                     title: str = "per-channel statistics", save: str | Path | None = None, dpi: int = 100,
                     figsize: tuple[float, float] | None = None):
    """Per-channel statistics as a table figure.

    ``statistics`` is a plate's ``attrs["jumpdenoise"]["statistics"]`` (its ``plate`` entry is used) or a
    mapping ``channel -> {stat: value}``. Keys absent from every channel are left out.
    """
    per_channel = statistics.get("plate", statistics) if isinstance(statistics, Mapping) else statistics
    if not per_channel:
        raise ValueError("no per-channel statistics to draw")
    present = [k for k in keys if any(k in v for v in per_channel.values())]
    rows = [{"channel": ch, **{k: vals.get(k, "") for k in present}} for ch, vals in per_channel.items()]
    return table_figure(rows, title=title, columns=["channel", *present], save=save, dpi=dpi, figsize=figsize)
