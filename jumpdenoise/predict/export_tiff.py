"""Export a denoised plate as per-channel TIFFs plus a load_data CSV for CellProfiler.

JUMP profiles come from CellProfiler pipelines fed by load_data CSVs of per-channel TIFFs.
:func:`export_tiff` writes every done field of a denoised plate as one TIFF per channel,
named like the source file of that (well, site, channel) (from the plate's
``.jumpdenoise/layout.json``), and a load_data CSV so that an existing pipeline runs
unchanged on the denoised images:

- Source read from a load_data CSV (``layout.metadata["csv_path"]`` still readable): the
  same columns and rows; for each denoised channel ``FileName_Orig<Ch>`` /
  ``PathName_Orig<Ch>`` (and ``URL_Orig<Ch>`` when present, as a ``file://`` URL) point to
  the new files. Channels the model did not denoise and every other column (illumination
  functions ``*_Illum*``, metadata) are kept as they are. Rows of fields not exported are
  dropped. The CSV keeps the source's file name.
- Other sources (Phenix, hyperstacks): ``load_data.csv`` with ``FileName_Orig<Ch>``,
  ``PathName_Orig<Ch>`` per channel, then ``Metadata_Plate``, ``Metadata_Well``,
  ``Metadata_Site`` (channel names reduced to letters, digits and ``_`` in column names).

Several channels of one source file (hyperstacks) get ``<stem>_<channel>.tiff``. Plates
without a layout get ``<WELL>_s<SITE>_<channel>.tiff``. TIFFs keep the plate's dtype.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from jumpdenoise.errors import OutputExistsError, PlateError

__all__ = ["export_tiff"]


def _column_name(channel: str) -> str:
    return re.sub(r"\W", "", channel.replace(" ", "_")) or "Channel"


def _names(info, layout, well: str, field: int, channels: list[str]) -> tuple[int, dict[str, str]]:
    """Site and output file name of each channel of one field."""
    site = field + 1
    planes: dict = {}
    if layout is not None:
        try:
            fl = next(f for f in layout.well(well).fields if f.index == field)
            site, planes = fl.site, fl.planes
        except (KeyError, StopIteration):
            pass
    names = {}
    for ch in channels:
        ref = planes.get(ch)
        if ref is None:
            names[ch] = f"{well}_s{site}_{_column_name(ch)}.tiff"
            continue
        name = Path(ref.path.split("?")[0]).name
        if ref.channel_index is not None or sum(1 for r in planes.values() if Path(r.path).name == name) > 1:
            stem = name.rsplit(".", 1)[0] if "." in name else name
            name = f"{stem}_{_column_name(ch)}.tiff"
        names[ch] = name
    return site, names


def export_tiff(denoised: str | Path, out_dir: str | Path, *, wells: Sequence[str] | None = None,
                overwrite: bool = False, compression: str | None = None) -> Path:
    """Write the done fields of ``denoised`` as TIFFs and a load_data CSV into ``out_dir``.

    Parameters
    ----------
    denoised
        A denoised plate (any jumpdenoise plate works).
    out_dir
        Output folder (created); TIFFs and the CSV are written flat into it.
    wells
        Wells to export (default: all).
    overwrite
        Allow a non-empty ``out_dir``.
    compression
        tifffile compression (``None``: uncompressed, as microscopes write; ``"zlib"``...).

    Returns
    -------
    Path
        The load_data CSV written.

    Raises
    ------
    OutputExistsError
        If ``out_dir`` is not empty and ``overwrite`` is false.
    PlateError
        If two images would get the same file name, or a well is not in the plate.
    """
    import tifffile

    from jumpdenoise.io.layout import PlateLayout, split_well, well_id
    from jumpdenoise.io.ngff import done_keys, field_key, plate_info, read_field

    plate = Path(denoised)
    info = plate_info(plate)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(str(out))
    out.mkdir(parents=True, exist_ok=True)
    layout_file = plate / ".jumpdenoise" / "layout.json"
    layout = PlateLayout.load(layout_file) if layout_file.is_file() else None
    selected = list(info.wells) if wells is None else [well_id(*split_well(w)) for w in wells]
    absent = [w for w in selected if w not in info.wells]
    if absent:
        raise PlateError(f"{plate}: no well(s) {absent}")
    done = done_keys(plate) if info.kind == "denoised" else None
    channels = list(info.channels)
    written: dict[tuple[str, int], dict[str, str]] = {}
    used: set[str] = set()
    for w in selected:
        for f in info.wells[w]:
            if done is not None and field_key(w, f) not in done:
                continue
            site, names = _names(info, layout, w, f, channels)
            clash = [n for n in names.values() if n in used]
            if clash:
                raise PlateError(f"{plate} {w}/{f}: file name(s) {clash} already used by another image")
            used.update(names.values())
            data = read_field(plate, w, f)
            for i, ch in enumerate(channels):
                tifffile.imwrite(out / names[ch], np.ascontiguousarray(data[i]), compression=compression)
            written[(w, site)] = names
    src_csv = Path(layout.metadata.get("csv_path", "")) if layout is not None else None
    if layout is not None and layout.source_kind == "load_data" and src_csv and src_csv.is_file():
        return _rewrite_load_data(src_csv, out, written, channels, info.name)
    return _write_load_data(out / "load_data.csv", out, written, channels, info.name)


def _rewrite_load_data(src: Path, out: Path, written: dict, channels: list[str], plate: str) -> Path:
    from jumpdenoise.io.layout import split_well, well_id

    with open(src, newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    target = out / src.name
    multi_plate = len({r.get("Metadata_Plate") for r in rows}) > 1
    folder = str(out.resolve())
    with open(target, "w", newline="") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        for row in rows:
            try:
                key = (well_id(*split_well(row.get("Metadata_Well") or "")), int(float(row.get("Metadata_Site") or "")))
            except ValueError:
                continue
            names = written.get(key)
            if names is None or (multi_plate and row.get("Metadata_Plate") != plate):
                continue
            for ch, name in names.items():
                if f"FileName_Orig{ch}" in row:
                    row[f"FileName_Orig{ch}"] = name
                if f"PathName_Orig{ch}" in row:
                    row[f"PathName_Orig{ch}"] = folder
                if f"URL_Orig{ch}" in row:
                    row[f"URL_Orig{ch}"] = (out / name).resolve().as_uri()
            writer.writerow(row)
    return target


def _write_load_data(target: Path, out: Path, written: dict, channels: list[str], plate: str) -> Path:
    cols = [c for ch in channels for c in (f"FileName_Orig{_column_name(ch)}", f"PathName_Orig{_column_name(ch)}")]
    cols += ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
    folder = str(out.resolve())
    with open(target, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for (well, site), names in sorted(written.items()):
            row = [v for ch in channels for v in (names[ch], folder)]
            writer.writerow(row + [plate, well, site])
    return target
