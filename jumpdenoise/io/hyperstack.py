"""Folders of multi-channel TIFFs, one file per field (C x Y x X, Y x X x C, ImageJ hyperstacks).

Well and field come from each file name through a regular expression with named groups:
``well`` (``A01``, ``a1``), or ``row`` (letter(s) or number) and ``column``; and ``field``
(the site id; fields are numbered in site order within a well). Files that do not match
are left out, counted in ``layout.metadata["unmatched_files"]`` and named (the first 20)
in ``layout.metadata["unmatched_names"]``; the convert stage refuses them unless
``convert.allow_missing``.

Axes: ``"CYX"``, ``"YXC"`` or ``"auto"``. With ``"auto"`` the axes tifffile reports are
used when they say where the channels are (ImageJ hyperstacks ``C``, RGB-like samples
``S``, OME-TIFF); otherwise the short axis at the start (CYX) or end (YXC) is the channel
axis. Length-1 axes (a single z or t) are dropped.

Channel names: the ImageJ ``Labels`` of the first file, else the OME channel names, else
``channel_names``; when none is available the channels are called ``ch1``, ``ch2``, ...
and a warning is logged. The first file decides axes, channel count, shape and dtype;
every file is checked against it when it is read.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from jumpdenoise.errors import ImageError, SourceError
from jumpdenoise.io.discovery import PlaneTable, row_from_number
from jumpdenoise.io.layout import Channel, PlaneRef, PlateLayout, split_well
from jumpdenoise.io.tiff import open_tiff, squeeze_axes

__all__ = ["read_hyperstacks"]

log = logging.getLogger(__name__)
#: Names of non-matching files kept in the layout's metadata (all are counted).
_UNMATCHED_SHOWN = 20
_OME_CHANNEL_RE = re.compile(r"<(?:\w+:)?Channel\b[^>]*?\bName=\"([^\"]*)\"")


def _parse_name(match: re.Match, name: str, pattern: str) -> tuple[str, int, int]:
    groups = match.groupdict()
    try:
        if groups.get("well"):
            row, col = split_well(groups["well"])
        elif groups.get("row") and groups.get("column"):
            raw_row = groups["row"]
            row = row_from_number(int(raw_row)) if raw_row.isdigit() else raw_row.upper()
            col = int(groups["column"])
        else:
            raise ValueError("the pattern needs a group 'well', or groups 'row' and 'column'")
        field = int(groups["field"]) if groups.get("field") is not None else 1
    except (ValueError, KeyError) as exc:
        raise SourceError(f"{name}: cannot read well/field with pattern {pattern!r}: {exc}") from None
    return row, col, field


def _auto_axes(shape: tuple[int, ...], axes: str, path: str) -> str:
    """Map tifffile's squeezed axes to ``YX``, ``CYX`` or ``YXC``."""
    if len(shape) == 2:
        return "YX"
    if len(shape) != 3:
        raise ImageError(path, f"expected one 2-D or 3-D (channels) array per file, found shape {shape} (axes {axes})")
    if axes in ("CYX", "YXC"):
        return axes
    if axes.endswith("YX") and not axes.startswith("C"):
        # e.g. ImageJ 'ZYX' / generic 'QYX' / 'IYX': the leading axis holds the channels
        return "CYX" if shape[0] <= shape[2] else "YXC"
    if axes.startswith("YX"):
        return "YXC"
    return "CYX" if shape[0] <= shape[-1] else "YXC"


def _channel_labels(tif, n_channels: int) -> list[str] | None:
    meta = tif.imagej_metadata or {}
    labels = meta.get("Labels")
    if isinstance(labels, (list, tuple)) and len(labels) >= n_channels:
        labels = [str(x) for x in labels[:n_channels]]
        if all(labels) and len(set(labels)) == n_channels:
            return labels
    if tif.is_ome and tif.ome_metadata:
        names = _OME_CHANNEL_RE.findall(tif.ome_metadata)
        if len(names) == n_channels and all(names) and len(set(names)) == n_channels:
            return names
    return None


def read_hyperstacks(
    folder: str | Path,
    *,
    filename_pattern: str,
    channel_names: list[str] | None = None,
    axes: str = "auto",
    plate_name: str | None = None,
    channels: list[str] | None = None,
) -> PlateLayout:
    """Read a folder of multi-channel TIFFs into a :class:`PlateLayout`.

    Parameters
    ----------
    folder
        Folder holding one ``.tif``/``.tiff`` per field (sub-folders are not searched).
    filename_pattern
        Regular expression searched in each file name, with named groups ``well`` (or
        ``row`` and ``column``) and ``field``, e.g. ``r"(?P<well>[A-P]\\d{2})_s(?P<field>\\d+)"``.
    channel_names
        Names in file order, used when the files carry no channel labels (or to override
        unlabeled ones); must match the channel count.
    axes
        ``"CYX"``, ``"YXC"`` or ``"auto"``.
    plate_name
        Plate name (default: the folder's name).
    channels
        Channels to keep, in this order (default: all).

    Raises
    ------
    SourceError
        Bad pattern, no matching file, duplicate (well, field), channel count unlike
        ``channel_names``. The message names the folder or file.
    """
    folder = Path(folder)
    try:
        regex = re.compile(filename_pattern)
    except re.error as exc:
        raise SourceError(f"filename_pattern {filename_pattern!r} is not a valid regular expression: {exc}") from None
    try:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".tif", ".tiff")))
    except OSError as exc:
        raise SourceError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None
    matched = [(n, m) for n in names if (m := regex.search(n))]
    unmatched = [n for n in names if not regex.search(n)]
    if not matched:
        raise SourceError(f"{folder}: no TIFF file name matches filename_pattern {filename_pattern!r} ({len(names)} TIFFs)")
    axes = axes.upper()
    if axes not in ("AUTO", "CYX", "YXC"):
        raise SourceError(f"axes must be 'auto', 'CYX' or 'YXC', got {axes!r}")

    first = str(folder / matched[0][0])
    with open_tiff(first) as tif:
        if not tif.series:
            raise ImageError(first, "no image found in the file")
        series = tif.series[0]
        shape, saxes = squeeze_axes(tuple(series.shape), series.axes)
        file_axes = _auto_axes(shape, saxes, first) if axes == "AUTO" else axes
        if len(shape) != len(file_axes):
            raise ImageError(first, f"array has shape {tuple(series.shape)}, which does not fit axes {file_axes}")
        n_channels = shape[file_axes.index("C")] if "C" in file_axes else 1
        labels = _channel_labels(tif, n_channels)
        dtype = series.dtype.name
    yx = tuple(n for n, a in zip(shape, file_axes) if a != "C")
    source = "file"
    if channel_names:
        if len(channel_names) != n_channels:
            raise SourceError(f"{first}: has {n_channels} channel(s) but channel_names lists {len(channel_names)}: {channel_names}")
        labels, source = list(channel_names), "config"
    elif labels is None:
        labels, source = [f"ch{i + 1}" for i in range(n_channels)], "index"
        log.warning("%s: no channel labels in the files and no channel_names given; using %s", folder, labels)
    if len(set(labels)) != len(labels):
        raise SourceError(f"{first}: duplicate channel names {labels}")

    table = PlaneTable(str(folder))
    for name, m in matched:
        row, col, field = _parse_name(m, name, filename_pattern)
        path = str(folder / name)
        for c, label in enumerate(labels):
            ref = PlaneRef(path=path, channel_index=None if file_axes == "YX" else c, axes=file_axes)
            table.add(row, col, field, label, ref, True)
    return table.build(
        name=plate_name or folder.name, source_kind="hyperstack", source_path=str(folder),
        channels=[Channel(name=n, source_id=str(i)) for i, n in enumerate(labels)],
        shape=(int(yx[0]), int(yx[1])), dtype=dtype,
        metadata={"axes": file_axes, "channel_names_from": source, "filename_pattern": filename_pattern,
                  "unmatched_files": str(len(unmatched)), "unmatched_names": "\n".join(unmatched[:_UNMATCHED_SHOWN])},
        subset=channels,
    )
