"""Raw and denoised plates through the readers people open them with: napari-ome-zarr's reader
function (no viewer, no Qt) and xarray (``xarray.open_zarr`` on an image, ``jumpdenoise.open_plate``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import jumpdenoise
from jumpdenoise.config import ConvertConfig
from jumpdenoise.io import ngff
from jumpdenoise.io.layout import Channel, FieldLayout, PlaneRef, PlateLayout, WellLayout

CHANNELS = ["DNA", "Mito"]
WELLS = {"A01": [0, 1], "B03": [0, 1]}
SHAPE = (32, 40)


def make_layout() -> PlateLayout:
    def fl(i: int) -> FieldLayout:
        return FieldLayout(index=i, site=i + 1, planes={c: PlaneRef(path=f"/dummy/{i}{c}.tif") for c in CHANNELS})

    return PlateLayout(
        name="READERS", source_kind="phenix", source_path="/dummy/Index.xml", n_rows=2, n_columns=3,
        channels=[Channel(name=c, source_id=str(i + 1)) for i, c in enumerate(CHANNELS)],
        wells=[WellLayout(row=w[0], column=int(w[1:]), fields=[fl(f) for f in fs]) for w, fs in WELLS.items()],
        shape=SHAPE, dtype="uint16", pixel_size_um=0.6,
    )


def raw_pixels(well: str, field: int) -> np.ndarray:
    rng = np.random.default_rng([ord(well[0]), int(well[1:]), field])
    return rng.integers(100, 60000, size=(len(CHANNELS), *SHAPE), dtype=np.uint16)


def denoised_pixels(well: str, field: int) -> np.ndarray:
    return raw_pixels(well, field).astype(np.float32) * 0.5 + 0.25


@pytest.fixture(scope="module")
def plates(tmp_path_factory) -> dict[str, Path]:
    """A raw uint16 plate with one pyramid level and its float32 "denoised" counterpart."""
    root = tmp_path_factory.mktemp("readers")
    raw, denoised = root / "raw.zarr", root / "denoised.zarr"
    ngff.create_plate(raw, make_layout(), ConvertConfig(pyramid_levels=1))
    ngff.create_plate_like(raw, denoised, dtype="float32")
    for well, fields in WELLS.items():
        for f in fields:
            ngff.write_field(raw, well, f, raw_pixels(well, f))
            ngff.write_field(denoised, well, f, denoised_pixels(well, f))
    return {"raw": raw, "denoised": denoised}


@pytest.mark.parametrize("kind", ["raw", "denoised"])
def test_napari_ome_zarr_reader_function_on_the_plate(plates, kind):
    from napari_ome_zarr._reader import napari_get_reader

    path = plates[kind]
    reader = napari_get_reader(str(path))
    assert callable(reader)
    layers = reader(str(path))
    assert len(layers) == 1
    data, kwargs, layer_type = layers[0]
    assert layer_type == "image" and kwargs["channel_axis"] == 0
    assert [name.split(": ")[-1] for name in kwargs["name"]] == CHANNELS
    # the plate as one mosaic of each well's first field, one array per pyramid level
    assert len(data) == 2
    ny, nx = SHAPE
    assert data[0].shape == (len(CHANNELS), 2 * ny, 3 * nx) and data[1].shape == (len(CHANNELS), ny, 3 * nx // 2)
    expected = raw_pixels if kind == "raw" else denoised_pixels
    b03 = np.asarray(data[0][:, ny:, 2 * nx:])  # row B, column 3
    assert b03.dtype == np.dtype("uint16" if kind == "raw" else "float32")
    assert np.array_equal(b03, expected("B03", 0))
    assert not np.asarray(data[0][:, :ny, nx:2 * nx]).any()  # A02: no well there, zeros


def test_napari_ome_zarr_reader_function_on_one_field(plates):
    from napari_ome_zarr._reader import napari_get_reader

    field = plates["raw"] / "A" / "1" / "1"
    data, kwargs, layer_type = napari_get_reader(str(field))(str(field))[0]
    assert layer_type == "image" and kwargs["channel_axis"] == 0
    assert [np.asarray(level).shape for level in data] == [(2, 32, 40), (2, 16, 20)]
    assert np.array_equal(np.asarray(data[0]), raw_pixels("A01", 1))
    assert kwargs["scale"] == pytest.approx([0.6, 0.6])


@pytest.mark.parametrize("kind", ["raw", "denoised"])
def test_xarray_open_zarr_on_a_field_image(plates, kind):
    # the levels share the dimension names c, y, x: one level per dataset
    image = xr.open_zarr(plates[kind] / "B" / "3" / "1", consolidated=False, zarr_format=3, drop_variables=["1"])
    level0 = image["0"]
    assert level0.dims == ("c", "y", "x") and level0.shape == (2, *SHAPE)
    expected = raw_pixels("B03", 1) if kind == "raw" else denoised_pixels("B03", 1)
    assert level0.dtype == expected.dtype and np.array_equal(level0.values, expected)


@pytest.mark.parametrize("kind", ["raw", "denoised"])
def test_open_plate_is_an_xarray_view(plates, kind):
    view = jumpdenoise.open_plate(plates[kind])
    assert isinstance(view, xr.DataArray)
    assert view.dims == ("well", "field", "c", "y", "x") and view.shape == (2, 2, 2, *SHAPE)
    assert view["c"].values.tolist() == CHANNELS
    expected = raw_pixels("A01", 1) if kind == "raw" else denoised_pixels("A01", 1)
    assert np.array_equal(view.sel(well="A01", field=1).values, expected)


def test_default_pyramid_reaches_a_plate_overview(tmp_path):
    """``pyramid_levels: auto`` on 1080 x 1080 fields: 5 extra levels, the coarsest 33 x 33, which napari's
    plate view reads when zoomed out; small fields get none."""
    from jumpdenoise.config.convert import pyramid_levels_for

    layout = make_layout().model_copy(update={"shape": (1080, 1080)})
    ngff.create_plate(tmp_path / "jump.zarr", layout, ConvertConfig())
    info = ngff.plate_info(tmp_path / "jump.zarr")
    assert info.n_levels == 6 and info.attrs["storage"]["pyramid_levels"] == "auto"
    assert ngff.field_array(tmp_path / "jump.zarr", "B03", 1, 5).shape == (2, 33, 33)
    assert pyramid_levels_for("auto", SHAPE) == 0 and pyramid_levels_for("auto", (256, 256)) == 2
