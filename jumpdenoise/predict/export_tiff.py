"""Export a denoised plate as per-channel TIFFs plus a load_data CSV for CellProfiler.

JUMP profiles come from CellProfiler pipelines fed by load_data CSVs of per-channel TIFFs.
:func:`export_tiff` writes every done field of a denoised plate as one TIFF per channel,
named like the source file of that (well, site, channel) (from the plate's
``.jumpdenoise/layout.json``), and a load_data CSV (:mod:`jumpdenoise.predict.export_csv`)
so that an existing pipeline runs unchanged on the denoised images.

Intensities, as CellProfiler reads them
---------------------------------------
LoadData ("Rescale intensities?: Yes", the default) divides every pixel by a scale taken
from the file: Bio-Formats' ``MaxSampleValue`` of a TIFF, which is the TIFF tag 281 when
present and otherwise ``2**bits - 1``. An uint16 TIFF is thus divided by 65535, like the
raw Phenix images; a float32 TIFF without the tag is divided by ``2**32 - 1``, which put
denoised intensities about 65,000 times below the raw ones.

- ``dtype="source"`` (default): the dtype of the source images (uint16 for JUMP); values
  are rounded and clipped to its range, and the number of clipped pixels per channel is
  returned (and logged). CellProfiler then reads raw and denoised plates on one scale.
- ``dtype="float32"``: the values of the plate, unrounded, in float32, with the tag
  ``MaxSampleValue`` set to the maximum of the source dtype (65535 for uint16), so that
  CellProfiler divides them by the same number as the raw images. Tools that ignore the
  tag (tifffile, napari, Fiji) read the raw-unit values.

Several channels of one source file (hyperstacks) get ``<stem>_<channel>.tiff``. Plates
without a layout get ``<WELL>_s<SITE>_<channel>.tiff``. TIFFs are LZW-compressed by
default, as Phenix writes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from jumpdenoise.errors import ConfigError, OutputExistsError, PlateError
from jumpdenoise.io.ngff_markers import LAYOUT_FILE, sidecar_path
from jumpdenoise.predict.export_csv import ExtraColumns, column_name, rewrite_load_data, write_load_data

__all__ = ["TiffExport", "export_tiff", "to_export_dtype"]

log = logging.getLogger("jumpdenoise.predict")

#: TIFF tag read by Bio-Formats (hence CellProfiler) as the intensity scale.
MAX_SAMPLE_VALUE_TAG = 281
DTYPES = ("source", "float32")


@dataclass
class TiffExport:
    """What :func:`export_tiff` wrote.

    Attributes
    ----------
    csv_path
        The load_data CSV.
    n_fields
        Fields exported (one TIFF per channel each).
    dtype
        numpy dtype name of the TIFFs.
    clipped
        Channel -> number of pixels clipped to the range of ``dtype`` (all zero for float32).
    """

    csv_path: Path
    n_fields: int
    dtype: str
    clipped: dict[str, int]


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
            names[ch] = f"{well}_s{site}_{column_name(ch)}.tiff"
            continue
        name = Path(ref.path.split("?")[0]).name
        if ref.channel_index is not None or sum(1 for r in planes.values() if Path(r.path).name == name) > 1:
            stem = name.rsplit(".", 1)[0] if "." in name else name
            name = f"{stem}_{column_name(ch)}.tiff"
        names[ch] = name
    return site, names


def to_export_dtype(plane: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, int]:
    """``plane`` in ``dtype``: rounded and clipped for integer dtypes.

    Returns
    -------
    (converted plane, number of pixels clipped or not finite)
    """
    dtype = np.dtype(dtype)
    if plane.dtype == dtype:
        return np.ascontiguousarray(plane), 0
    if not np.issubdtype(dtype, np.integer):
        return np.ascontiguousarray(plane, dtype=dtype), 0
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    rounded = np.rint(plane.astype(np.float64, copy=False))
    outside = ~((rounded >= lo) & (rounded <= hi))  # NaN counts as outside
    return np.clip(np.nan_to_num(rounded, nan=lo), lo, hi).astype(dtype), int(outside.sum())


def _source_dtype(info, layout) -> np.dtype:
    """Dtype of the images the plate was converted from (the plate's own when unknown)."""
    if layout is not None:
        return np.dtype(layout.dtype)
    raw = (info.attrs.get("provenance") or {}).get("raw_plate")
    if raw:
        from jumpdenoise.io.ngff import plate_info

        try:
            return np.dtype(plate_info(raw).dtype)
        except (PlateError, OSError):
            pass
    return np.dtype(info.dtype)


def export_tiff(denoised: str | Path, out_dir: str | Path, *, wells: Sequence[str] | None = None,
                overwrite: bool = False, compression: str | None = "lzw", dtype: str = "source",
                extra: ExtraColumns | None = None) -> TiffExport:
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
        tifffile compression (``"lzw"``, as Phenix writes; ``None``: uncompressed; ``"zlib"``...).
    dtype
        ``"source"`` (rounded, clipped to the source images' dtype) or ``"float32"`` (with a
        ``MaxSampleValue`` tag for CellProfiler); see the module docstring.
    extra
        ``Metadata_*`` and illumination-function columns to add to the CSV.

    Returns
    -------
    TiffExport

    Raises
    ------
    OutputExistsError
        If ``out_dir`` is not empty and ``overwrite`` is false.
    UnsafeOutputError
        If ``out_dir`` overlaps the plate, or ``overwrite`` would write into a non-empty
        folder that no earlier export wrote.
    PlateError
        If two images would get the same file name, or a well is not in the plate.
    ConfigError
        If ``dtype`` is not one of ``"source"``, ``"float32"``.
    """
    import tifffile

    from jumpdenoise.io.layout import PlateLayout, split_well, well_id
    from jumpdenoise.io.ngff import done_keys, field_key, plate_info, read_field
    from jumpdenoise.io.output_guard import check_apart, check_removable, mark_export_folder

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: expected one of {list(DTYPES)}")
    plate = Path(denoised)
    info = plate_info(plate)
    out = Path(out_dir)
    check_apart(out, [plate])
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(str(out))
        check_removable(out, "TIFF export")  # only a folder an earlier export wrote is written over
    out.mkdir(parents=True, exist_ok=True)
    mark_export_folder(out)
    layout_file = sidecar_path(plate, LAYOUT_FILE)
    layout = PlateLayout.load(layout_file) if layout_file.is_file() else None
    selected = list(info.wells) if wells is None else [well_id(*split_well(w)) for w in wells]
    absent = [w for w in selected if w not in info.wells]
    if absent:
        raise PlateError(f"{plate}: no well(s) {absent}")
    channels = list(info.channels)
    extra_columns = (extra or ExtraColumns()).columns(info.name, channels)
    source = _source_dtype(info, layout)
    target = source if dtype == "source" else np.dtype(np.float32)
    tags = []
    if target.kind == "f" and source.kind in "ui":
        tags = [(MAX_SAMPLE_VALUE_TAG, "H", 1, min(int(np.iinfo(source).max), 65535), True)]
    done = done_keys(plate) if info.kind == "denoised" else None
    written: dict[tuple[str, int], dict[str, str]] = {}
    used: set[str] = set()
    clipped = dict.fromkeys(channels, 0)
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
                pixels, n_out = to_export_dtype(data[i], target)
                clipped[ch] += n_out
                tifffile.imwrite(out / names[ch], pixels, compression=compression, extratags=tags)
            written[(w, site)] = names
    for ch, n_out in clipped.items():
        if n_out:
            log.warning("export-tiff: %d pixel(s) of channel %s clipped to the %s range", n_out, ch, target.name)
    src_csv = Path(layout.metadata.get("csv_path", "")) if layout is not None else None
    if layout is not None and layout.source_kind == "load_data" and src_csv and src_csv.is_file():
        csv_path = rewrite_load_data(src_csv, out, written, info.name, extra_columns)
    else:
        csv_path = write_load_data(out / "load_data.csv", out, written, channels, info.name, extra_columns)
    return TiffExport(csv_path=csv_path, n_fields=len(written), dtype=target.name, clipped=clipped)
