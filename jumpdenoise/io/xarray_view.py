"""A whole OME-Zarr plate as one lazy ``xarray.DataArray`` (well, field, c, y, x)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jumpdenoise.io.ngff import plate_info


class _PlateArray:
    """Array-like (well, field, c, y, x) over a plate's field arrays, read on demand.

    Picklable (only the plate path and small tables are stored); each process opens the
    zarr arrays it needs once. Missing fields read as zeros.
    """

    def __init__(self, path: Path, wells: list[str], fields: list[int], present: np.ndarray,
                 shape_cyx: tuple[int, int, int], dtype: np.dtype, level: int) -> None:
        self.path, self.wells, self.fields, self.present = path, wells, fields, present
        self.level = level
        self.shape = (len(wells), len(fields), *shape_cyx)
        self.dtype = np.dtype(dtype)
        self.ndim = 5
        self._arrays: dict = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": {}}

    def _array(self, wi: int, fi: int):
        key = (wi, fi)
        if key not in self._arrays:
            from jumpdenoise.io.ngff import field_array

            self._arrays[key] = field_array(self.path, self.wells[wi], self.fields[fi], self.level)
        return self._arrays[key]

    def __getitem__(self, key: tuple) -> np.ndarray:
        key = key + (slice(None),) * (5 - len(key))
        wells = range(*key[0].indices(self.shape[0]))
        fields = range(*key[1].indices(self.shape[1]))
        inner = key[2:]
        blank = np.zeros(self.shape[2:], dtype=self.dtype)[inner]
        out = np.empty((len(wells), len(fields), *blank.shape), dtype=self.dtype)
        for i, wi in enumerate(wells):
            for j, fi in enumerate(fields):
                out[i, j] = self._array(wi, fi)[inner] if self.present[wi, fi] else blank
        return out


def open_plate(path: str | Path, level: int = 0, channels: list[str] | None = None):
    """Open a plate lazily: nothing is read until values are asked for.

    Parameters
    ----------
    path
        OME-Zarr HCS plate (written by jumpdenoise or any NGFF 0.5 writer).
    level
        Resolution level (0 = full resolution).
    channels
        Channel names to keep (default: all).

    Returns
    -------
    xarray.DataArray
        Dimensions ``(well, field, c, y, x)``, backed by dask with one chunk per zarr chunk
        of a field. Coordinates: ``well`` (ids such as ``"A01"``), ``field`` (indices),
        ``c`` (channel names), ``y``/``x`` (micrometres when the pixel size is known, else
        pixels; ``attrs["yx_unit"]`` says which), and ``present`` (well, field): whether
        the field exists. Wells with fewer fields than others are padded lazily with
        zeros where ``present`` is False. ``attrs`` hold the plate's ``jumpdenoise``
        attributes (``statistics`` among them) plus ``name``, ``kind``, ``path``, ``level``.
    """
    import dask.array as da
    import xarray as xr

    from jumpdenoise.io.ngff import field_array

    info = plate_info(path)
    wells = list(info.wells)
    field_ids = sorted({f for fs in info.wells.values() for f in fs})
    present = np.array([[f in info.wells[w] for f in field_ids] for w in wells], dtype=bool)
    first = field_array(info.path, wells[0], info.wells[wells[0]][0], level)
    reader = _PlateArray(info.path, wells, field_ids, present, tuple(first.shape), first.dtype, level)
    data = da.from_array(reader, chunks=(1, 1, *first.chunks), fancy=False, asarray=False,
                         meta=np.empty((0,) * 5, dtype=first.dtype), name=f"plate-{info.path}-{level}")
    scale = (info.pixel_size_um or 1.0) * 2**level
    coords: dict = {"well": wells, "field": field_ids, "c": list(info.channels),
                    "present": (("well", "field"), present),
                    "y": np.arange(first.shape[1]) * scale, "x": np.arange(first.shape[2]) * scale}
    attrs = {**info.attrs, "name": info.name, "kind": info.kind, "path": str(info.path),
             "level": level, "yx_unit": "micrometer" if info.pixel_size_um else "pixel"}
    out = xr.DataArray(data, dims=("well", "field", "c", "y", "x"), coords=coords, name=info.name, attrs=attrs)
    if channels is not None:
        out = out.sel(c=list(channels))
    return out
