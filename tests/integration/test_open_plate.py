"""jumpdenoise.open_plate: a lazy (well, field, c, y, x) xarray view of a plate."""

from __future__ import annotations

import numpy as np
import pytest

import jumpdenoise
from jumpdenoise.compute.stats import field_partial, merge_partials
from jumpdenoise.config import ConvertConfig
from jumpdenoise.io import ngff
from jumpdenoise.io.layout import Channel, FieldLayout, PlaneRef, PlateLayout, WellLayout

CHANNELS = ["AGP", "DNA"]


def make_layout():
    """Wells with unequal field counts: A01 has 3 fields, C05 has 2 (0 and 2: field 1 missing)."""
    def fl(i):
        return FieldLayout(index=i, site=i + 1, planes={c: PlaneRef(path=f"/dummy/{i}{c}.tif") for c in CHANNELS})

    return PlateLayout(
        name="VIEW", source_kind="hyperstack", source_path="/dummy", n_rows=8, n_columns=12,
        channels=[Channel(name=c, source_id=str(i)) for i, c in enumerate(CHANNELS)],
        wells=[WellLayout(row="A", column=1, fields=[fl(0), fl(1), fl(2)]),
               WellLayout(row="C", column=5, fields=[fl(0), fl(2)])],
        shape=(24, 20), dtype="uint16", pixel_size_um=None,
    )


def pixels(well, field):
    rng = np.random.default_rng([ord(well[0]), field])
    return rng.integers(1, 60000, size=(2, 24, 20), dtype=np.uint16)


@pytest.fixture
def plate(tmp_path):
    layout = make_layout()
    path = tmp_path / "view.zarr"
    ngff.create_plate(path, layout, ConvertConfig(pyramid_levels=1, shard=True))
    for w, f in [(w.id, f.index) for w in layout.wells for f in w.fields]:
        ngff.write_field(path, w, f, pixels(w, f))
    return path


def test_dims_coords_and_values(plate):
    view = jumpdenoise.open_plate(plate)
    assert view.dims == ("well", "field", "c", "y", "x")
    assert view.shape == (2, 3, 2, 24, 20)
    assert view.dtype == np.uint16
    assert view["well"].values.tolist() == ["A01", "C05"]
    assert view["field"].values.tolist() == [0, 1, 2]
    assert view["c"].values.tolist() == CHANNELS
    assert view.attrs["yx_unit"] == "pixel" and view["x"].values[:3].tolist() == [0, 1, 2]
    assert view.chunks is not None  # dask-backed, nothing read yet
    assert np.array_equal(view.sel(well="C05", field=2).values, pixels("C05", 2))
    assert np.array_equal(view.sel(well="A01", field=1, c="DNA").values, pixels("A01", 1)[1])


def test_view_survives_pickling(plate):
    import pickle

    view = jumpdenoise.open_plate(plate)
    clone = pickle.loads(pickle.dumps(view))  # what a Dask worker receives
    assert np.array_equal(clone.sel(well="A01", field=2).values, pixels("A01", 2))


def test_missing_fields_are_padded_and_flagged(plate):
    view = jumpdenoise.open_plate(plate)
    assert view["present"].values.tolist() == [[True, True, True], [True, False, True]]
    assert not view.sel(well="C05", field=1).values.any()
    assert view.where(view["present"]).sel(well="C05").isnull().sum() == 2 * 24 * 20


def test_level_channels_and_statistics(plate):
    level1 = jumpdenoise.open_plate(plate, level=1, channels=["DNA"])
    assert level1.shape == (2, 3, 1, 12, 10)
    assert "statistics" not in level1.attrs
    partials = {ngff.field_key(w, f): field_partial(pixels(w, f), CHANNELS)
                for w, f in [("A01", 0), ("A01", 1), ("A01", 2), ("C05", 0), ("C05", 2)]}
    ngff.write_statistics(plate, merge_partials(partials, CHANNELS))
    view = jumpdenoise.open_plate(plate)
    stats = view.attrs["statistics"]
    present = view.where(view["present"]).sel(c="AGP").values
    assert stats["plate"]["AGP"]["mean"] == pytest.approx(np.nanmean(present.astype(np.float64)), rel=1e-12)
    assert stats["plate"]["AGP"]["count"] == 5 * 24 * 20
