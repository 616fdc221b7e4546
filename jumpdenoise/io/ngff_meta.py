"""OME-Zarr (NGFF 0.5) metadata of a jumpdenoise HCS plate: building it and reading it back.

This module holds no pixel I/O. :mod:`jumpdenoise.io.ngff` uses it to create plates and
to describe them as a :class:`PlateInfo`. The format is documented in ``docs/FORMATS.md``.
"""

from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jumpdenoise.errors import PlateError
from jumpdenoise.io.layout import row_letter, split_well, well_id

NGFF_VERSION = "0.5"
LAYOUT_VERSION = 1
#: Display colours of channels, by channel index (names never decide a colour).
PALETTE = ("0000FF", "00FF00", "FF0000", "FF00FF", "FFFF00", "00FFFF", "FFFFFF", "FF8000")
#: Keys of :class:`~jumpdenoise.config.ConvertConfig` that describe storage (kept in attrs).
STORAGE_KEYS = ("chunk_yx", "shard", "codec", "clevel", "shuffle", "pyramid_levels")


@dataclass
class PlateInfo:
    """What a plate holds, read from its metadata (no pixels).

    Attributes
    ----------
    path
        Folder of the plate.
    name
        Plate name.
    kind
        ``"raw"``, ``"denoised"`` or ``"external"`` (an NGFF plate written by another tool).
    channels
        Channel names in ``c`` order.
    wells
        Well id (``"A01"``) -> field indices present, sorted.
    shape_yx
        Level-0 (y, x) size of every field.
    dtype
        numpy dtype name of the pixels.
    pixel_size_um
        Level-0 pixel size in micrometres, or ``None`` when unknown.
    attrs
        The ``jumpdenoise`` attributes of the plate (empty for external plates).
    statistics
        ``attrs["statistics"]`` when present, else ``None``.
    n_levels
        Number of resolution levels (1 + pyramid levels).
    n_rows, n_columns
        Plate shape.
    well_paths
        Well id -> zarr path of the well group (``"A/1"``).
    field_paths
        Well id -> {field index -> zarr path of the image group, relative to the well}.
    level_paths
        Zarr paths of the resolution levels inside an image group.
    """

    path: Path
    name: str
    kind: str
    channels: list[str]
    wells: dict[str, list[int]]
    shape_yx: tuple[int, int]
    dtype: str
    pixel_size_um: float | None
    attrs: dict[str, Any]
    statistics: dict | None
    n_levels: int = 1
    n_rows: int = 0
    n_columns: int = 0
    well_paths: dict[str, str] = field(default_factory=dict)
    field_paths: dict[str, dict[int, str]] = field(default_factory=dict)
    level_paths: list[str] = field(default_factory=lambda: ["0"])

    @property
    def n_fields(self) -> int:
        """Total number of fields in the plate."""
        return sum(len(v) for v in self.wells.values())

    def field_keys(self) -> list[tuple[str, int]]:
        """``(well, field)`` pairs in plate order."""
        return [(w, f) for w, fields in self.wells.items() for f in fields]

    def image_path(self, well: str, field_index: int) -> str:
        """Zarr path of one field image group, e.g. ``"A/1/0"``.

        Raises
        ------
        PlateError
            If the plate has no such well or field.
        """
        try:
            return f"{self.well_paths[well]}/{self.field_paths[well][int(field_index)]}"
        except KeyError:
            raise PlateError(f"{self.path}: no field {well}/{field_index} in this plate") from None


# ----------------------------------------------------------------------------- building


def well_path(well: str) -> str:
    """Zarr path of a well group: ``"A01" -> "A/1"``."""
    row, col = split_well(well)
    return f"{row}/{col}"


def plate_attrs(
    name: str, n_rows: int, n_columns: int, wells: dict[str, list[int]], jd_attrs: dict
) -> dict:
    """Root attributes: ``ome.plate`` (every row and column of the plate) and ``jumpdenoise``."""
    rows = [row_letter(i) for i in range(1, n_rows + 1)]
    row_index = {r: i for i, r in enumerate(rows)}
    ngff_wells = []
    for w in wells:
        row, col = split_well(w)
        if row not in row_index or not 1 <= col <= n_columns:
            raise PlateError(f"well {w} lies outside a plate of {n_rows} x {n_columns} wells")
        ngff_wells.append({"path": f"{row}/{col}", "rowIndex": row_index[row], "columnIndex": col - 1})
    plate = {
        "version": NGFF_VERSION,
        "name": name,
        "rows": [{"name": r} for r in rows],
        "columns": [{"name": str(c)} for c in range(1, n_columns + 1)],
        "wells": ngff_wells,
    }
    max_fields = max((len(f) for f in wells.values()), default=0)
    if max_fields:
        plate["field_count"] = max_fields
    return {"ome": {"version": NGFF_VERSION, "plate": plate}, "jumpdenoise": jd_attrs}


def well_attrs(fields: list[int]) -> dict:
    """Attributes of a well group listing its field images."""
    return {"ome": {"version": NGFF_VERSION, "well": {"version": NGFF_VERSION,
                                                      "images": [{"path": str(f)} for f in fields]}}}


def dtype_window(dtype: str) -> tuple[float, float]:
    """Full display range of a dtype: its range for integers, (0, 1) for floats."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def image_attrs(
    name: str, channels: list[str], dtype: str, n_levels: int, pixel_size_um: float | None,
    site: int | None = None,
) -> dict:
    """Attributes of one field image group: multiscales, omero channels, source site."""
    unit = {"unit": "micrometer"} if pixel_size_um else {}
    ps = float(pixel_size_um) if pixel_size_um else 1.0
    axes = [{"name": "c", "type": "channel"},
            {"name": "y", "type": "space", **unit},
            {"name": "x", "type": "space", **unit}]
    datasets = [{"path": str(lv), "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, ps * 2**lv, ps * 2**lv]}]} for lv in range(n_levels)]
    lo, hi = dtype_window(dtype)
    omero = {"channels": [
        {"label": ch, "color": PALETTE[i % len(PALETTE)], "active": True,
         "window": {"min": lo, "max": hi, "start": lo, "end": hi}}
        for i, ch in enumerate(channels)]}
    attrs: dict[str, Any] = {"ome": {"version": NGFF_VERSION,
                                     "multiscales": [{"name": name, "axes": axes, "datasets": datasets}],
                                     "omero": omero}}
    if site is not None:
        attrs["jumpdenoise"] = {"site": int(site)}
    return attrs


def level_shapes(shape_yx: tuple[int, int], n_levels: int) -> list[tuple[int, int]]:
    """(y, x) of each level: level k is level k-1 halved (odd sizes lose their last row/column)."""
    shapes = [tuple(int(s) for s in shape_yx)]
    for _ in range(1, n_levels):
        y, x = shapes[-1]
        if y < 2 or x < 2:
            raise PlateError(f"cannot build {n_levels} pyramid levels from a {shape_yx} field")
        shapes.append((y // 2, x // 2))
    return shapes  # type: ignore[return-value]


def array_metadata(shape_cyx: tuple[int, int, int], dtype: str, storage: dict):
    """Zarr v3 metadata of one level array, built by zarr itself (in memory, no I/O).

    Every chunk carries a CRC-32C of its compressed bytes (zarr's ``crc32c`` codec after
    blosc), checked whenever it is read.
    """
    import zarr
    from zarr.codecs import BloscCodec, Crc32cCodec
    from zarr.storage import MemoryStore

    c, y, x = shape_cyx
    cy = min(storage.get("chunk_yx") or y, y)
    cx = min(storage.get("chunk_yx") or x, x)
    arr = zarr.create_array(
        MemoryStore(), shape=shape_cyx, dtype=dtype, chunks=(1, cy, cx),
        # one shard holds the whole field; rounded up to whole inner chunks (edge chunks are partial)
        shards=(c, -(-y // cy) * cy, -(-x // cx) * cx) if storage.get("shard") else None,
        compressors=[BloscCodec(cname=storage.get("codec", "zstd"), clevel=int(storage.get("clevel", 3)),
                                shuffle=storage.get("shuffle", "bitshuffle")), Crc32cCodec()],
        dimension_names=["c", "y", "x"], fill_value=0, write_data=False,
    )
    return arr.metadata


# ----------------------------------------------------------------------------- reading


def read_json(path: Path) -> dict:
    """Read a ``zarr.json`` (or any JSON) file; :class:`PlateError` naming it when unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PlateError(f"{path.parent}: not an OME-Zarr plate (no zarr.json)") from None
    except (OSError, ValueError) as exc:
        raise PlateError(f"{path}: unreadable zarr metadata ({exc})") from None


def _well_id_of(ngff_path: str) -> str:
    row, col = ngff_path.split("/")
    try:
        return well_id(row, int(col))
    except ValueError:
        return f"{row}{col}"


def _parse_external(root: Path, ome: dict) -> tuple[dict, dict, dict, dict]:
    """Wells, paths and the first image's attributes of a plate written by another tool."""
    ngff_wells = [w["path"] for w in ome["plate"].get("wells", [])]

    def images_of(p: str) -> list[str]:
        well = read_json(root / p / "zarr.json").get("attributes", {}).get("ome", {}).get("well", {})
        return [im["path"] for im in well.get("images", [])]

    with ThreadPoolExecutor(8) as pool:
        images = list(pool.map(images_of, ngff_wells))
    wells, well_paths, field_paths = {}, {}, {}
    for p, ims in zip(ngff_wells, images):
        if not ims:
            continue
        wid = _well_id_of(p)
        well_paths[wid] = p
        field_paths[wid] = {i: im for i, im in enumerate(ims)}
        wells[wid] = list(range(len(ims)))
    if not wells:
        raise PlateError(f"{root}: plate lists no well with images")
    first = next(iter(wells))
    img = read_json(root / well_paths[first] / field_paths[first][0] / "zarr.json").get("attributes", {})
    return wells, well_paths, field_paths, img.get("ome", img)


@functools.lru_cache(maxsize=64)
def _plate_info_cached(root_str: str, mtime_ns: int) -> PlateInfo:
    root = Path(root_str)
    meta = read_json(root / "zarr.json")
    if meta.get("node_type") != "group":
        raise PlateError(f"{root}: not an OME-Zarr plate (zarr.json is not a group)")
    attrs = meta.get("attributes", {})
    ome = attrs.get("ome") or attrs  # NGFF 0.4-style attributes hold 'plate' at top level
    if "plate" not in ome:
        raise PlateError(f"{root}: not an OME-Zarr HCS plate (no 'plate' metadata in zarr.json)")
    jd = attrs.get("jumpdenoise") or {}
    plate = ome["plate"]
    if jd.get("fields"):
        wells = {w: sorted(int(f) for f in fs) for w, fs in jd["fields"].items()}
        well_paths = {w: well_path(w) for w in wells}
        field_paths = {w: {f: str(f) for f in fs} for w, fs in wells.items()}
        first = next(iter(wells))
        img_meta = read_json(root / well_paths[first] / str(wells[first][0]) / "zarr.json")
        img = img_meta.get("attributes", {}).get("ome", {})
    else:
        wells, well_paths, field_paths, img = _parse_external(root, ome)
    try:
        ms = img["multiscales"][0]
        level_paths = [d["path"] for d in ms["datasets"]]
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    except (KeyError, IndexError) as exc:
        raise PlateError(f"{root}: first field image lacks multiscales metadata ({exc})") from None
    first = next(iter(wells))
    arr_path = root / well_paths[first] / field_paths[first][wells[first][0]] / level_paths[0]
    arr = read_json(arr_path / "zarr.json") if (arr_path / "zarr.json").exists() else None
    if arr is None:
        raise PlateError(f"{arr_path}: level-0 array missing or not zarr v3")
    shape = arr["shape"]
    if len(shape) < 3:
        raise PlateError(f"{arr_path}: expected a (c, y, x) array, got shape {shape}")
    channels = jd.get("channels") or [
        ch.get("label") or f"c{i}" for i, ch in enumerate(img.get("omero", {}).get("channels", []))]
    if len(channels) != shape[-3]:
        channels = [f"c{i}" for i in range(shape[-3])]
    units = [a.get("unit") for a in ms.get("axes", [])]
    pixel = jd.get("pixel_size_um")
    if pixel is None and units and units[-1] == "micrometer":
        pixel = float(scale[-1])
    return PlateInfo(
        path=root, name=jd.get("name") or plate.get("name") or root.stem,
        kind=jd.get("kind", "external"), channels=list(channels), wells=wells,
        shape_yx=(int(shape[-2]), int(shape[-1])), dtype=str(np.dtype(arr["data_type"])),
        pixel_size_um=pixel, attrs=jd, statistics=jd.get("statistics"), n_levels=len(level_paths),
        n_rows=len(plate.get("rows", [])), n_columns=len(plate.get("columns", [])),
        well_paths=well_paths, field_paths=field_paths, level_paths=level_paths,
    )


def read_plate_info(path: str | Path) -> PlateInfo:
    """Describe the plate at ``path`` (cached while its root ``zarr.json`` is unchanged).

    Raises
    ------
    PlateError
        If ``path`` is not an OME-Zarr HCS plate (the message names the path).
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise PlateError(f"{root}: not an OME-Zarr plate (no such folder)")
    try:
        mtime = os.stat(root / "zarr.json").st_mtime_ns
    except FileNotFoundError:
        raise PlateError(f"{root}: not an OME-Zarr plate (no zarr.json)") from None
    return _plate_info_cached(str(root), mtime)
