"""OME-Zarr (NGFF 0.5, zarr v3) HCS plates: create (metadata first), write/read fields, markers.

Safe parallel writing follows two rules (see ``docs/FORMATS.md``):

1. :func:`create_plate` / :func:`create_plate_like` write every group's metadata and every
   field's empty arrays, in one process, before any pixel is written.
2. A unit writes whole fields with :func:`write_field` (whole chunks and shards), then
   records its completion with :func:`mark_done` (atomic rename), never before.

Reading (verified: chunk checksums, missing chunks) is in :mod:`jumpdenoise.io.ngff_read`,
re-exported here. Statistics are written once, by one process, with :func:`write_statistics`
(:mod:`jumpdenoise.io.ngff_statistics`, re-exported here).
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jumpdenoise.errors import OutputExistsError, PlateError
from jumpdenoise.io.ngff_markers import (
    DONE, LAYOUT_FILE, SIDECAR, clear_done, done_keys, field_key, is_done, load_done, mark_done,
)
from jumpdenoise.io.ngff_meta import (
    LAYOUT_VERSION,
    STORAGE_KEYS,
    PlateInfo,
    array_metadata,
    image_attrs,
    level_shapes,
    plate_attrs,
    read_plate_info,
    well_attrs,
    well_path,
)
from jumpdenoise.io.ngff_read import field_array, field_complete, read_field
from jumpdenoise.io.ngff_statistics import display_window, update_group_attrs, write_statistics, write_statistics_csv

if TYPE_CHECKING:
    import zarr

    from jumpdenoise.config.convert import ConvertConfig
    from jumpdenoise.io.layout import PlateLayout

__all__ = [
    "PlateInfo", "clear_done", "create_plate", "create_plate_like", "done_keys", "field_array",
    "field_complete", "field_key", "is_done", "load_done", "mark_done", "plate_info", "read_field",
    "validate_plate", "write_field", "write_statistics",
]


def plate_info(plate: str | Path) -> PlateInfo:
    """Describe a plate from its metadata; see :class:`~jumpdenoise.io.ngff_meta.PlateInfo`.

    A plain NGFF 0.5 HCS plate written by another tool opens too (channels from its omero
    labels, ``kind == "external"``).

    Raises
    ------
    PlateError
        If ``plate`` is not an OME-Zarr HCS plate (the message names the path).
    """
    return copy.deepcopy(read_plate_info(plate))


# ----------------------------------------------------------------------------- creating


def _prepare_output(path: Path, overwrite: bool) -> None:
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputExistsError(str(path))
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)


def _create(
    path: Path, *, name: str, n_rows: int, n_columns: int, fields: dict[str, list[int]],
    sites: dict[str, list[int | None]], channels: list[str], shape_yx: tuple[int, int], dtype: str,
    pixel_size_um: float | None, storage: dict, jd_attrs: dict, overwrite: bool,
    sidecar: dict[str, str] | None = None, track_completion: bool = False,
) -> None:
    """Write the whole hierarchy (groups + empty arrays: zarr's metadata documents, written
    directly by :func:`~jumpdenoise.io.ngff_chunks.write_metadata_documents`), then the
    ``sidecar`` files (name -> text, under ``.jumpdenoise/``), then the plate metadata.
    ``track_completion``: the plate records its fields' completion from the start (an
    empty ``.jumpdenoise/done``; see :func:`~jumpdenoise.io.ngff_read.field_complete`)."""
    import zarr
    from zarr.core.group import GroupMetadata
    from zarr.storage import LocalStore

    from jumpdenoise.config.convert import pyramid_levels_for
    from jumpdenoise.io.ngff_chunks import write_metadata_documents

    _prepare_output(path, overwrite)
    n_levels = 1 + pyramid_levels_for(storage.get("pyramid_levels"), shape_yx)  # "auto": from the field size
    shapes = level_shapes(shape_yx, n_levels)
    arrays = [array_metadata((len(channels), y, x), dtype, storage) for y, x in shapes]
    jd = {**jd_attrs, "layout_version": LAYOUT_VERSION, "name": name, "channels": list(channels),
          "dtype": dtype, "shape_yx": [int(s) for s in shape_yx], "pixel_size_um": pixel_size_um,
          "storage": {k: storage.get(k) for k in STORAGE_KEYS}, "fields": fields}
    root_attrs = plate_attrs(name, n_rows, n_columns, fields, jd)  # checked before anything is written
    nodes: dict[str, Any] = {"": GroupMetadata(attributes={})}
    for row in sorted({well_path(w).split("/")[0] for w in fields}):
        nodes[row] = GroupMetadata(attributes={})
    for w, fs in fields.items():
        wp = well_path(w)
        nodes[wp] = GroupMetadata(attributes=well_attrs(fs))
        for f, site in zip(fs, sites[w]):
            nodes[f"{wp}/{f}"] = GroupMetadata(attributes=image_attrs(
                f"{name}/{w}/{f}", channels, dtype, n_levels, pixel_size_um, site))
            for lv, meta in enumerate(arrays):
                nodes[f"{wp}/{f}/{lv}"] = meta
    store = LocalStore(path)
    if not write_metadata_documents(path, nodes):
        for _ in zarr.create_hierarchy(store=store, nodes=nodes, overwrite=False):
            pass
    (path / SIDECAR).mkdir(exist_ok=True)
    if track_completion:
        (path / SIDECAR / DONE).mkdir(exist_ok=True)
    for fname, text in (sidecar or {}).items():
        (path / SIDECAR / fname).write_text(text)
    # the plate metadata last: a creation killed midway leaves no plate that plate_info accepts
    zarr.open_group(store, mode="r+").update_attributes(root_attrs)


def create_plate(
    path: str | Path, layout: PlateLayout, convert: ConvertConfig, *, kind: str = "raw",
    overwrite: bool = False, extra_attrs: dict | None = None, track_completion: bool = False,
) -> None:
    """Create an empty plate for ``layout``: all metadata and every field's empty arrays.

    Parameters
    ----------
    path
        Output folder (``PLATE.zarr``).
    layout
        The source plate; its wells, fields, channels, shape, dtype and pixel size are used.
    convert
        Chunking, sharding, codec and pyramid levels.
    kind
        ``"raw"`` or ``"denoised"``; stored in ``attrs["jumpdenoise"]["kind"]``.
    overwrite
        Replace an existing ``path``.
    extra_attrs
        Merged into the ``jumpdenoise`` attributes (e.g. ``provenance``).
    track_completion
        Record the fields' completion from the start (an empty ``.jumpdenoise/done``): a
        field is then read as holding data only once marked done (the convert stage).

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    fields = {w.id: [f.index for f in w.fields] for w in layout.wells}
    sites = {w.id: [f.site for f in w.fields] for w in layout.wells}
    jd = {"kind": kind, "source": {"kind": layout.source_kind, "path": layout.source_path,
                                   "name": layout.name}, **(extra_attrs or {})}
    _create(path, name=layout.name, n_rows=layout.n_rows, n_columns=layout.n_columns, fields=fields,
            sites=sites, channels=layout.channel_names, shape_yx=tuple(layout.shape), dtype=layout.dtype,
            pixel_size_um=layout.pixel_size_um, storage=convert.model_dump(), jd_attrs=jd,
            overwrite=overwrite, sidecar={LAYOUT_FILE: layout.model_dump_json(indent=1)},
            track_completion=track_completion)


def create_plate_like(
    src_plate: str | Path, dst_plate: str | Path, *, dtype: str, kind: str = "denoised",
    wells: list[str] | None = None, channels: list[str] | None = None, overwrite: bool = False,
    extra_attrs: dict | None = None, convert: ConvertConfig | None = None,
) -> None:
    """Create an empty plate with the layout of ``src_plate`` (e.g. for denoised output).

    Parameters
    ----------
    src_plate, dst_plate
        Existing plate to copy the layout from; plate to create.
    dtype
        Pixel dtype of the new plate.
    kind
        Stored in ``attrs["jumpdenoise"]["kind"]``.
    wells, channels
        Subsets to keep (default: all, in the source order).
    convert
        Storage settings; default: those of the source plate.

    The new plate records the completion of its fields from the start: a field is read as
    holding data only once marked done.
    """
    src = plate_info(src_plate)
    dst = Path(dst_plate)
    if dst.resolve() == src.path:
        raise PlateError(f"{dst}: the output plate cannot be its source plate")
    keep_wells = list(src.wells) if wells is None else list(wells)
    keep_channels = list(src.channels) if channels is None else list(channels)
    for w in keep_wells:
        if w not in src.wells:
            raise PlateError(f"{src.path}: no well {w!r} (wells: {', '.join(src.wells)})")
    for ch in keep_channels:
        if ch not in src.channels:
            raise PlateError(f"{src.path}: no channel {ch!r} (channels: {src.channels})")
    storage = convert.model_dump() if convert is not None else dict(src.attrs.get("storage") or {})
    sites = {w: [_site(src, w, f) for f in src.wells[w]] for w in keep_wells}
    jd = {k: v for k, v in src.attrs.items()
          if k not in ("statistics", "provenance", "fields", "storage", "channels", "dtype", "kind")}
    jd.update({"kind": kind, "derived_from": str(src.path), **(extra_attrs or {})})
    layout = src.path / SIDECAR / LAYOUT_FILE
    _create(dst, name=src.name, n_rows=src.n_rows or 16, n_columns=src.n_columns or 24,
            fields={w: list(src.wells[w]) for w in keep_wells}, sites=sites, channels=keep_channels,
            shape_yx=src.shape_yx, dtype=str(np.dtype(dtype)), pixel_size_um=src.pixel_size_um,
            storage=storage, jd_attrs=jd, overwrite=overwrite,
            sidecar={LAYOUT_FILE: layout.read_text()} if layout.is_file() else None, track_completion=True)


def _site(info: PlateInfo, well: str, field: int) -> int | None:
    if info.kind == "external":
        return None
    from jumpdenoise.io.ngff_meta import read_json

    attrs = read_json(info.path / info.image_path(well, field) / "zarr.json").get("attributes", {})
    return attrs.get("jumpdenoise", {}).get("site")


# ----------------------------------------------------------------------------- pixels


def downsample2(data: np.ndarray) -> np.ndarray:
    """2x2 mean of a (c, y, x) array (odd sizes drop their last row/column), same dtype.

    Integers are rounded half up; floats are plain means.
    """
    c, y, x = data.shape
    d = data[:, : y - y % 2, : x - x % 2]
    if data.dtype.kind in "ui":
        s = (d[:, 0::2, 0::2].astype(np.int64) + d[:, 1::2, 0::2] + d[:, 0::2, 1::2] + d[:, 1::2, 1::2])
        return ((s + 2) // 4).astype(data.dtype)
    s = d[:, 0::2, 0::2] + d[:, 1::2, 0::2] + d[:, 0::2, 1::2] + d[:, 1::2, 1::2]
    return (s / 4).astype(data.dtype)


def write_field(
    plate: str | Path, well: str, field: int, data: np.ndarray, *, pyramid_levels: int | None = None
) -> None:
    """Write one whole field (c, y, x) at level 0 and its downsampled pyramid levels.

    Every chunk is written, also one holding only the fill value, so that a field its
    plate marks complete has all its chunk files. The caller owns the field (a unit writes
    whole fields): temporary chunk files a killed
    earlier write left in its arrays are removed first
    (:func:`~jumpdenoise.io.ngff_chunks.remove_partial_chunks`), so a redo leaves the same
    files as an uninterrupted write.

    Parameters
    ----------
    plate, well, field
        Where to write; the field must exist (created by :func:`create_plate`).
    data
        The pixels; shape and dtype must match the plate.
    pyramid_levels
        Extra levels to write (default: all the plate has).

    Raises
    ------
    PlateError
        If the shape or dtype differ from the plate's.
    """
    info = read_plate_info(plate)
    expected = (len(info.channels), *info.shape_yx)
    if tuple(data.shape) != expected or str(data.dtype) != info.dtype:
        raise PlateError(f"{info.path} {well}/{field}: data {data.shape} {data.dtype} does not match "
                         f"the plate's {expected} {info.dtype}")
    from jumpdenoise.io.ngff_chunks import remove_partial_chunks, write_whole_chunks

    remove_partial_chunks(info.path / info.image_path(well, field))
    levels = info.n_levels if pyramid_levels is None else min(info.n_levels, 1 + pyramid_levels)
    level_data = data
    for lv in range(levels):
        if lv:
            level_data = downsample2(level_data)
        # every chunk written, even one of only the fill value: a missing chunk is then damage
        target = field_array(plate, well, field, lv).with_config({"write_empty_chunks": True})
        if not write_whole_chunks(target, level_data):  # same bytes as zarr's write, less CPU
            target[...] = level_data


# ----------------------------------------------------------------------------- validation


def validate_plate(plate: str | Path) -> None:
    """Validate ``plate`` against the NGFF 0.5 HCS model of ome-zarr-models.

    The model reads every group's metadata: about 40 s for a 384-well x 9-field plate.

    Raises
    ------
    PlateError
        With the validator's message when the plate is not valid.
    """
    import warnings

    import zarr
    from ome_zarr_models.exceptions import ValidationWarning
    from ome_zarr_models.v05.hcs import HCS

    path = Path(plate)
    try:
        group = zarr.open_group(path, mode="r")
    except Exception as exc:  # noqa: BLE001 - any failure to open is a plate error
        raise PlateError(f"{path}: cannot open as a zarr group ({exc})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", category=ValidationWarning)
            HCS.from_zarr(group)
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError, ValueError, warnings
        raise PlateError(f"{path}: not a valid NGFF 0.5 HCS plate: {exc}") from None
