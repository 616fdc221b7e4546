"""Copy a plate as OME-NGFF 0.4 (zarr v2), for the tools that do not read NGFF 0.5 yet.

CellProfiler 5's NGFF reader, ilastik, MoBIE, iohub on Python 3.11 and bioio at plate level
read HCS plates as NGFF 0.4 on zarr v2 only. :func:`export_ngff_v04` writes such a copy:

- the same hierarchy, plate / well / multiscales / omero metadata (the 0.5 ``ome`` block
  moved to the top level of each group's attributes, ``"version": "0.4"`` in each object)
  and the ``jumpdenoise`` attributes;
- every resolution level with the same shape, dtype and chunks (the inner chunks of a
  sharded array: zarr v2 has no shards) and the same Blosc or Zstd compressor; chunk keys
  use ``/`` as NGFF 0.4 asks. The CRC-32C checksum of the 0.5 plate is left out: it is no
  v2 compressor, and a v2 filter would make the copy unreadable to the tools it is for.

Fields are copied in parallel (threads: decompression and compression release the GIL)
and marked done one by one, so that an interrupted export resumes where it stopped when
rerun. Denoised plates contribute their finished fields only.
"""

from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jumpdenoise.errors import OutputExistsError, PlateError
from jumpdenoise.io.ngff_markers import DONE_V04, NGFF_V04_MANIFEST
from jumpdenoise.io.output_guard import check_apart, remove_output

__all__ = ["V04Export", "export_ngff_v04", "to_v04_attrs"]

log = logging.getLogger("jumpdenoise.io")

MANIFEST = NGFF_V04_MANIFEST
DONE_NAMESPACE = DONE_V04


@dataclass
class V04Export:
    """What :func:`export_ngff_v04` did.

    Attributes
    ----------
    path
        The NGFF 0.4 plate.
    n_fields
        Fields the plate holds.
    n_copied
        Fields copied by this call (the others were done by an earlier, interrupted call).
    """

    path: Path
    n_fields: int
    n_copied: int


def to_v04_attrs(attrs: dict) -> dict:
    """The attributes of a 0.5 group rewritten for 0.4 (``ome`` block flattened, versions set)."""
    ome = dict(attrs.get("ome") or {})
    ome.pop("version", None)
    out = {k: v for k, v in attrs.items() if k != "ome"}
    for key, value in ome.items():
        if key in ("plate", "well"):
            value = {**value, "version": "0.4"}
        elif key == "multiscales":
            value = [{**m, "version": "0.4"} for m in value]
        out[key] = value
    return out


def _v2_compressor(array: Any) -> Any:
    """The numcodecs compressor of a zarr v2 copy of the v3 ``array`` (checksums dropped)."""
    import numcodecs
    from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

    found = []
    for codec in array.compressors:
        if isinstance(codec, BloscCodec):
            shuffle = {"noshuffle": numcodecs.Blosc.NOSHUFFLE, "shuffle": numcodecs.Blosc.SHUFFLE,
                       "bitshuffle": numcodecs.Blosc.BITSHUFFLE}[getattr(codec.shuffle, "value", codec.shuffle)]
            found.append(numcodecs.Blosc(cname=getattr(codec.cname, "value", codec.cname), clevel=codec.clevel,
                                         shuffle=shuffle))
        elif isinstance(codec, ZstdCodec):
            found.append(numcodecs.Zstd(level=codec.level))
        elif isinstance(codec, GzipCodec):
            found.append(numcodecs.GZip(level=codec.level))
        elif not isinstance(codec, Crc32cCodec):
            raise PlateError(f"{array.store_path}: codec {type(codec).__name__} has no zarr v2 equivalent here")
    if len(found) > 1:
        raise PlateError(f"{array.store_path}: more than one compressor ({found})")
    return found[0] if found else None


def _create_tree(src: Path, dst: Path, info: Any) -> None:
    """All groups, attributes and empty arrays of the copy."""
    import zarr

    def group(path: str, attrs: dict) -> None:
        zarr.open_group(dst / path if path else dst, mode="a", zarr_format=2).attrs.update(to_v04_attrs(attrs))

    root = zarr.open_group(src, mode="r")
    group("", dict(root.attrs))
    for well, fields in info.wells.items():
        wpath = info.well_paths[well]
        group(wpath.split("/")[0], dict(root[wpath.split("/")[0]].attrs))
        group(wpath, dict(root[wpath].attrs))
        for f in fields:
            ipath = f"{wpath}/{info.field_paths[well][f]}"
            group(ipath, dict(root[ipath].attrs))
            for level in info.level_paths:
                arr = root[f"{ipath}/{level}"]
                zarr.create_array(
                    str(dst / ipath / level), shape=arr.shape, dtype=arr.dtype, chunks=arr.chunks,
                    compressors=_v2_compressor(arr), fill_value=arr.fill_value, zarr_format=2,
                    chunk_key_encoding={"name": "v2", "separator": "/"}, overwrite=True)


def _copy_field(src: Path, dst: Path, image_path: str, levels: list[str]) -> None:
    import zarr

    for level in levels:
        source = zarr.open_array(src / image_path / level, mode="r")
        zarr.open_array(dst / image_path / level, mode="r+")[...] = source[...]


def export_ngff_v04(plate: str | Path, out: str | Path, *, overwrite: bool = False,
                    workers: int | None = None) -> V04Export:
    """Write ``plate`` (NGFF 0.5) as the NGFF 0.4 / zarr v2 plate ``out``.

    Parameters
    ----------
    plate
        A jumpdenoise plate (raw or denoised).
    out
        Folder to write (``PLATE_v04.zarr``).
    overwrite
        Replace an ``out`` that is not an unfinished export of the same plate.
    workers
        Fields copied at once (default: up to 8, by CPU count).

    Returns
    -------
    V04Export

    Raises
    ------
    OutputExistsError
        If ``out`` exists, is not an unfinished export of ``plate`` and ``overwrite`` is false.
    PlateError
        If a codec has no zarr v2 equivalent.
    """
    import os

    from jumpdenoise.io.ngff import plate_info
    from jumpdenoise.io.ngff_markers import LAYOUT_FILE, SIDECAR, done_keys, field_key, mark_done

    src = Path(plate).resolve()
    dst = Path(out)
    info = plate_info(src)
    manifest = {"source": str(src), "ngff": "0.4"}
    manifest_path = dst / SIDECAR / MANIFEST
    resuming = manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest
    check_apart(dst, [src])
    if dst.exists() and not resuming:
        if not overwrite:
            raise OutputExistsError(f"{dst} (not an unfinished NGFF 0.4 export of {src})")
        remove_output(dst, ("NGFF 0.4 export", "empty folder"))  # only an export of ours
    if not resuming:
        _create_tree(src, dst, info)
        layout = src / SIDECAR / LAYOUT_FILE
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        if layout.is_file():
            shutil.copyfile(layout, dst / SIDECAR / LAYOUT_FILE)
        manifest_path.write_text(json.dumps(manifest, indent=1))
    source_done = done_keys(src) if info.kind == "denoised" else None
    already = done_keys(dst, DONE_NAMESPACE)
    todo = [(w, f) for w, fields in info.wells.items() for f in fields
            if field_key(w, f) not in already and (source_done is None or field_key(w, f) in source_done)]

    def copy(item: tuple[str, int]) -> None:
        well, f = item
        _copy_field(src, dst, f"{info.well_paths[well]}/{info.field_paths[well][f]}", list(info.level_paths))
        mark_done(dst, field_key(well, f), namespace=DONE_NAMESPACE)

    n_workers = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(n_workers) as pool:
        list(pool.map(copy, todo))
    n_fields = sum(len(fields) for fields in info.wells.values())
    log.info("NGFF 0.4 copy %s: %d field(s) copied, %d in all", dst, len(todo), n_fields)
    return V04Export(path=dst, n_fields=n_fields, n_copied=len(todo))
