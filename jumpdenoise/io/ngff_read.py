"""Reading fields of an OME-Zarr plate: whole fields, verified (re-exported by :mod:`jumpdenoise.io.ngff`).

:func:`read_field` refuses to guess: a chunk that fails its checksum or cannot be decoded
is an error, and so is a chunk file missing from a field that the plate says holds data
(:func:`field_complete`); each message names the field, the channel and the file.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jumpdenoise.errors import PlateError
from jumpdenoise.io.ngff_markers import field_key, is_done, tracks_completion
from jumpdenoise.io.ngff_meta import PlateInfo, read_plate_info

if TYPE_CHECKING:
    import zarr

log = logging.getLogger("jumpdenoise.ngff")

__all__ = ["field_array", "field_complete", "read_field"]


def field_array(plate: str | Path, well: str, field: int, level: int = 0) -> zarr.Array:
    """The lazy zarr array (c, y, x) of one field at one resolution level.

    Raises
    ------
    PlateError
        If the plate has no such well, field or level.
    """
    import zarr

    info = read_plate_info(plate)
    if not 0 <= level < info.n_levels:
        raise PlateError(f"{info.path}: no level {level} (the plate has {info.n_levels})")
    p = info.path / info.image_path(well, field) / info.level_paths[level]
    try:
        return zarr.open_array(store=p, mode="r+" if os.access(p, os.W_OK) else "r")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise PlateError(f"{p}: cannot open array ({exc})") from None


def field_complete(plate: str | Path, well: str, field: int) -> bool:
    """Whether ``plate`` says field ``well/field`` holds data, so that a missing chunk is damage.

    A plate that records completion (a ``.jumpdenoise/done`` folder: converted or denoised
    by jumpdenoise) says so with the field's done marker, and :func:`write_field` writes
    every chunk of a field. Other plates (external ones, or plates written without the
    stages) do not say: their missing chunks read as the fill value, as zarr reads them.
    """
    info = read_plate_info(plate)
    return info.kind != "external" and tracks_completion(info.path) and is_done(info.path, field_key(well, field))


@functools.lru_cache(maxsize=256)
def _note_unverified(plate: str) -> None:
    """Log once per plate and process that its chunks carry no checksum."""
    log.warning("%s: written without chunk checksums (an older plate): its chunks are read unverified", plate)


def _chunk_channels(info: PlateInfo, arr: zarr.Array, coords: tuple[int, ...]) -> str:
    """The channel name(s) a chunk at ``coords`` holds (the whole field's for a shard)."""
    per_chunk = int(arr.metadata.chunk_grid.chunk_shape[0])
    names = info.channels[coords[0] * per_chunk:(coords[0] + 1) * per_chunk] if coords else info.channels
    return ", ".join(repr(n) for n in names)


def _read_with_zarr(info: PlateInfo, arr: zarr.Array, where: str, complete: bool,
                    indices: list[int] | None) -> np.ndarray:
    """Read through zarr (arrays the direct reader does not take), errors naming the field."""
    from jumpdenoise.io.ngff_chunks import ChunkError, missing_chunk_files

    if complete:
        absent = missing_chunk_files(arr)
        if absent:
            coords, path = absent[0]
            more = f" (and {len(absent) - 1} more chunk(s))" if len(absent) > 1 else ""
            raise ChunkError(path, coords, f"chunk file missing{more}",
                             f"{info.path}: {where}, channel(s) {_chunk_channels(info, arr, coords)}")
    try:
        return arr[...] if indices is None else np.stack([arr[i] for i in indices])
    except Exception as exc:  # noqa: BLE001 - crc32c mismatch (ValueError), blosc (RuntimeError), ...
        failing = next((i for i in (indices or range(arr.shape[0])) if not _reads(arr, i)), None)
        which = f", channel {info.channels[failing]!r}" if failing is not None else ""
        raise PlateError(f"{info.path}: {where}{which}: damaged chunk ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _reads(arr: zarr.Array, index: int) -> bool:
    try:
        arr[index]
    except Exception:  # noqa: BLE001 - only asks whether it reads
        return False
    return True


def read_field(
    plate: str | Path, well: str, field: int, level: int = 0, channels: list[str] | None = None,
    *, complete: bool | None = None,
) -> np.ndarray:
    """Read one field as a numpy array (c, y, x), optionally a subset of channels by name.

    Arrays stored as whole chunks are decoded directly (:func:`jumpdenoise.io.ngff_chunks.read_whole_chunks`).
    Chunk checksums are verified when the plate has them (plates written before they were
    added are read unverified, which is logged once per plate).

    Parameters
    ----------
    complete
        Whether the field must hold data, so that a missing chunk is an error rather than
        the fill value; default: what the plate says (:func:`field_complete`).

    Raises
    ------
    PlateError
        No such field or channel; a chunk missing (of a complete field), failing its
        checksum or not decodable (:class:`~jumpdenoise.io.ngff_chunks.ChunkError`). The
        message names the field, channel and file.
    """
    from jumpdenoise.io.ngff_chunks import ChunkError, has_checksum, read_whole_chunks

    info = read_plate_info(plate)
    arr = field_array(plate, well, field, level)
    where = f"field {well}/{field}" + (f" level {level}" if level else "")
    if complete is None:
        complete = field_complete(plate, well, field)
    if not has_checksum(arr):
        _note_unverified(str(info.path))
    names = info.channels
    if channels is not None:
        missing = [c for c in channels if c not in names]
        if missing:
            raise PlateError(f"{plate}: no channel(s) {missing} (channels: {names})")
        if channels == names:
            channels = None
    indices = None if channels is None else [names.index(c) for c in channels]
    try:
        data = read_whole_chunks(arr, missing="error" if complete else "fill") \
            if channels is None or len(channels) > 1 else None
    except ChunkError as exc:
        raise ChunkError(exc.path, exc.coords, exc.reason,
                         f"{info.path}: {where}, channel(s) {_chunk_channels(info, arr, exc.coords)}") from None
    if data is None:
        return _read_with_zarr(info, arr, where, complete, indices)
    return data if indices is None else data[indices]
