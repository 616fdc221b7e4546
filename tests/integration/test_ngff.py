"""OME-Zarr HCS plate writer/reader: round trip, validation, other readers, markers, statistics."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import zarr

from jumpdenoise.compute.stats import field_partial, merge_partials
from jumpdenoise.config import ConvertConfig
from jumpdenoise.errors import OutputExistsError, PlateError
from jumpdenoise.io import ngff
from jumpdenoise.io.layout import Channel, FieldLayout, PlaneRef, PlateLayout, WellLayout

CHANNELS = ["DNA", "ER", "Mito"]


def make_layout(wells=("A01", "A02", "B01"), n_fields=2, shape=(40, 34), dtype="uint16", channels=CHANNELS):
    """A small hand-made layout; planes point to dummy paths (pixels come from write_field)."""
    return PlateLayout(
        name="TESTPLATE", source_kind="phenix", source_path="/nowhere/Index.xml", n_rows=16, n_columns=24,
        channels=[Channel(name=c, source_id=str(i + 1)) for i, c in enumerate(channels)],
        wells=[WellLayout(row=w[0], column=int(w[1:]), fields=[
            FieldLayout(index=f, site=f + 1, planes={c: PlaneRef(path=f"/nowhere/{w}-{f}-{c}.tiff") for c in channels})
            for f in range(n_fields)]) for w in wells],
        shape=shape, dtype=dtype, pixel_size_um=0.6,
    )


def pixels(layout, well, field, seed=0):
    rng = np.random.default_rng([seed, int(field), ord(well[0]), int(well[1:])])
    return rng.integers(0, 4096, size=(len(layout.channels), *layout.shape), dtype=layout.dtype)


def fill(path, layout, seed=0):
    for w in layout.wells:
        for f in w.fields:
            ngff.write_field(path, w.id, f.index, pixels(layout, w.id, f.index, seed))


@pytest.fixture
def plate(tmp_path):
    layout = make_layout()
    path = tmp_path / "plate.zarr"
    ngff.create_plate(path, layout, ConvertConfig(pyramid_levels=1))
    fill(path, layout)
    return path, layout


@pytest.mark.parametrize("storage", [
    dict(shard=False, codec="zstd"),
    dict(shard=True, codec="lz4", pyramid_levels=2),
    dict(shard=True, codec="zstd", chunk_yx=16, pyramid_levels=1),
])
def test_round_trip_is_byte_exact_and_storage_as_configured(tmp_path, storage):
    layout = make_layout()
    path = tmp_path / "p.zarr"
    ngff.create_plate(path, layout, ConvertConfig(**storage))
    fill(path, layout)
    for w in layout.wells:
        for f in w.fields:
            expected = pixels(layout, w.id, f.index)
            got = ngff.read_field(path, w.id, f.index)
            assert got.dtype == expected.dtype and np.array_equal(got, expected)
    arr = ngff.field_array(path, "A02", 1)
    yx = storage.get("chunk_yx")
    assert arr.chunks == (1, yx or 40, yx or 34)
    assert arr.shards == ((3, 48, 48) if yx else (3, 40, 34)) if storage["shard"] else arr.shards is None
    assert arr.metadata.dimension_names == ("c", "y", "x")
    blosc = arr.compressors[0]
    assert blosc.cname.value == storage["codec"]
    info = ngff.plate_info(path)
    assert info.n_levels == 1 + storage.get("pyramid_levels", 0)
    assert (path / ".jumpdenoise" / "layout.json").is_file()
    assert PlateLayout.load(path / ".jumpdenoise" / "layout.json") == layout
    ngff.validate_plate(path)


def test_pyramid_levels_are_rounded_2x_means(plate):
    path, layout = plate
    data = pixels(layout, "B01", 1).astype(np.float64)
    level1 = ngff.read_field(path, "B01", 1, level=1)
    expected = np.floor(data.reshape(3, 20, 2, 17, 2).mean(axis=(2, 4)) + 0.5).astype(np.uint16)
    assert level1.dtype == np.uint16 and np.array_equal(level1, expected)
    ms = json.loads((path / "B/1/1/zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
    assert [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]] == [[1, 0.6, 0.6], [1, 1.2, 1.2]]
    assert ms["axes"][1] == {"name": "y", "type": "space", "unit": "micrometer"}


def test_plate_info_and_channel_subset(plate):
    path, layout = plate
    info = ngff.plate_info(path)
    assert info.name == "TESTPLATE" and info.kind == "raw"
    assert info.channels == CHANNELS
    assert info.wells == {"A01": [0, 1], "A02": [0, 1], "B01": [0, 1]}
    assert info.shape_yx == (40, 34) and info.dtype == "uint16" and info.pixel_size_um == 0.6
    assert info.statistics is None
    sub = ngff.read_field(path, "A01", 0, channels=["Mito", "DNA"])
    full = pixels(layout, "A01", 0)
    assert np.array_equal(sub, full[[2, 0]])
    with pytest.raises(PlateError, match="Nuclei"):
        ngff.read_field(path, "A01", 0, channels=["Nuclei"])
    with pytest.raises(PlateError, match="C07"):
        ngff.read_field(path, "C07", 0)


def test_validates_with_ome_zarr_models(plate):
    path, _ = plate
    ngff.validate_plate(path)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["ome"]["plate"]["wells"][0]["path"] = "Z/99"  # row and column not in the plate
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(PlateError, match="not in list of rows"):
        ngff.validate_plate(path)


def test_opens_with_ome_zarr_py_and_dask(plate):
    import dask.array as da
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Plate, Reader

    path, layout = plate
    node = next(iter(Reader(parse_url(str(path)))()))
    assert any(isinstance(spec, Plate) for spec in node.specs)
    stitched = np.asarray(node.data[0][:, :40, :34])  # field 0 of well A01 at the plate's top-left
    assert np.array_equal(stitched, pixels(layout, "A01", 0))
    lazy = da.from_zarr(str(path / "B" / "1" / "1" / "0"))
    assert np.array_equal(lazy.compute(), pixels(layout, "B01", 1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_plate_written_by_ome_zarr_py_opens(tmp_path):
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    root = zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=3)
    write_plate_metadata(root, ["A", "B"], ["1", "2"], ["A/2", "B/1"], fmt=FormatV05(), name="other")
    rng = np.random.default_rng(9)
    data = {}
    for wp in ["A/2", "B/1"]:
        row, col = wp.split("/")
        well = root.require_group(row).require_group(col)
        write_well_metadata(well, [{"path": "0"}], fmt=FormatV05())
        data[wp] = rng.integers(0, 255, size=(2, 32, 32), dtype=np.uint8)
        write_image(data[wp], well.require_group("0"), axes="cyx", scale_factors=[], fmt=FormatV05(),
                    omero={"channels": [{"label": "Hoechst", "color": "0000FF", "window": {"min": 0, "max": 255, "start": 0, "end": 255}},
                                        {"label": "Phalloidin", "color": "00FF00", "window": {"min": 0, "max": 255, "start": 0, "end": 255}}]})
    info = ngff.plate_info(tmp_path / "other.zarr")
    assert info.kind == "external" and info.channels == ["Hoechst", "Phalloidin"]
    assert info.wells == {"A02": [0], "B01": [0]} and info.dtype == "uint8"
    assert np.array_equal(ngff.read_field(tmp_path / "other.zarr", "B01", 0), data["B/1"])


def test_not_a_plate_names_the_path(tmp_path):
    with pytest.raises(PlateError, match="missing.zarr"):
        ngff.plate_info(tmp_path / "missing.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(PlateError, match="empty.zarr"):
        ngff.plate_info(tmp_path / "empty.zarr")
    zarr.open_group(tmp_path / "group.zarr", mode="w")
    with pytest.raises(PlateError, match="group.zarr.*no 'plate'"):
        ngff.plate_info(tmp_path / "group.zarr")
    with pytest.raises(PlateError, match="group.zarr"):
        ngff.validate_plate(tmp_path / "group.zarr")


def test_existing_output_needs_overwrite(plate):
    path, layout = plate
    with pytest.raises(OutputExistsError, match="plate.zarr"):
        ngff.create_plate(path, layout, ConvertConfig())
    ngff.create_plate(path, layout, ConvertConfig(), overwrite=True)
    assert not ngff.read_field(path, "A01", 0).any()  # fresh, empty arrays


def test_write_field_checks_shape_and_dtype(plate):
    path, _ = plate
    with pytest.raises(PlateError, match="A01/0.*does not match"):
        ngff.write_field(path, "A01", 0, np.zeros((3, 40, 33), np.uint16))
    with pytest.raises(PlateError, match="float32"):
        ngff.write_field(path, "A01", 0, np.zeros((3, 40, 34), np.float32))


def test_create_plate_like_keeps_layout(plate, tmp_path):
    path, _ = plate
    dst = tmp_path / "denoised.zarr"
    ngff.create_plate_like(path, dst, dtype="float32", channels=["ER", "Mito"], wells=["A02", "B01"],
                           extra_attrs={"provenance": {"model": "m.zip"}})
    info = ngff.plate_info(dst)
    assert info.kind == "denoised" and info.dtype == "float32" and info.channels == ["ER", "Mito"]
    assert info.wells == {"A02": [0, 1], "B01": [0, 1]} and info.shape_yx == (40, 34)
    assert info.n_levels == 2 and info.attrs["provenance"] == {"model": "m.zip"}
    site = json.loads((dst / "B/1/1/zarr.json").read_text())["attributes"]["jumpdenoise"]["site"]
    assert site == 2
    assert (dst / ".jumpdenoise" / "layout.json").read_text() == (path / ".jumpdenoise" / "layout.json").read_text()
    data = np.random.default_rng(0).random((2, 40, 34), dtype=np.float32)
    ngff.write_field(dst, "B01", 1, data)
    assert np.array_equal(ngff.read_field(dst, "B01", 1), data)
    ngff.validate_plate(dst)
    with pytest.raises(PlateError, match="Nuclei"):
        ngff.create_plate_like(path, tmp_path / "x.zarr", dtype="uint16", channels=["Nuclei"])


def test_markers_are_atomic_and_listed(plate):
    path, _ = plate
    assert ngff.field_key("A01", 1) == "A01-1"
    assert not ngff.is_done(path, "A01-1") and ngff.done_keys(path) == set()
    ngff.mark_done(path, "A01-1", {"x": np.arange(5)})
    ngff.mark_done(path, "B01-0", {}, namespace="predict")
    assert ngff.is_done(path, "A01-1") and ngff.done_keys(path) == {"A01-1"}
    assert ngff.done_keys(path, "predict") == {"B01-0"}
    assert np.array_equal(ngff.load_done(path, "A01-1")["x"], np.arange(5))
    assert [n for n in os.listdir(path / ".jumpdenoise" / "done") if n.startswith(".")] == []
    ngff.clear_done(path, "A01-1")
    assert not ngff.is_done(path, "A01-1")
    with pytest.raises(PlateError, match="A01-1"):
        ngff.load_done(path, "A01-1")


def test_write_statistics_sets_attrs_csv_and_windows(plate):
    path, layout = plate
    partials = {ngff.field_key(w.id, f.index): field_partial(pixels(layout, w.id, f.index), CHANNELS)
                for w in layout.wells for f in w.fields}
    stats = merge_partials(partials, CHANNELS)
    ngff.write_statistics(path, stats)
    info = ngff.plate_info(path)
    assert info.statistics["plate"]["DNA"] == pytest.approx(stats["plate"]["DNA"])
    with open(path / ".jumpdenoise" / "statistics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * (1 + 3)  # plate + 3 wells, 3 channels each
    assert rows[0]["scope"] == "plate" and float(rows[0]["p50"]) == stats["plate"][rows[0]["channel"]]["p50"]
    omero = json.loads((path / "A/2/1/zarr.json").read_text())["attributes"]["ome"]["omero"]["channels"]
    for ch, meta in zip(CHANNELS, omero):
        s = stats["plate"][ch]
        assert meta["label"] == ch
        win = meta["window"]
        assert s["min"] <= win["start"] < win["end"] <= s["max"]
        assert (win["start"], win["end"]) == (s["p0.1"], s["p99.9"])
        assert (win["min"], win["max"]) == (0, 65535)
    ngff.validate_plate(path)


def test_read_marker_equals_numpy_load_for_every_kind_of_array(tmp_path) -> None:
    import numpy as np

    from jumpdenoise.io.ngff_markers import load_done, mark_done, read_marker

    payload = {"channels": np.array(["DNA", "ER"]), "c0.dtype": np.array("u2"), "c0.count": np.array(7),
               "c0.moments": np.arange(5, dtype=np.float64), "empty": np.zeros((0,), np.float64),
               "grid": np.arange(12, dtype=np.int32).reshape(3, 4), "big": np.ones((300, 300), np.float32),
               "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3))}
    mark_done(tmp_path, "A01-0", payload)
    path = tmp_path / ".jumpdenoise" / "done" / "A01-0.npz"
    with np.load(path) as npz:
        ref = {k: npz[k] for k in npz.files}
    for got in (read_marker(path), load_done(tmp_path, "A01-0")):
        assert got.keys() == ref.keys() == payload.keys()
        for k in ref:
            assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape and np.array_equal(got[k], ref[k]), k
            assert got[k].flags.writeable
    np.savez_compressed(tmp_path / "c.npz", **payload)  # compressed members: numpy's reader
    assert all(np.array_equal(read_marker(tmp_path / "c.npz")[k], v) for k, v in payload.items())
    import pytest

    from jumpdenoise.errors import PlateError

    (tmp_path / ".jumpdenoise" / "done" / "A01-1.npz").write_bytes(b"broken")
    with pytest.raises(PlateError, match="unreadable completion marker"):
        load_done(tmp_path, "A01-1")
