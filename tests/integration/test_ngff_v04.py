"""export-zarr --ngff 0.4: readers (ome-zarr-models v04, ome-zarr-py), pixels, chunks, codec, resume."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from jumpdenoise.cli import app
from jumpdenoise.config import ConvertConfig
from jumpdenoise.errors import OutputExistsError
from jumpdenoise.io import ngff
from jumpdenoise.io.layout import Channel, FieldLayout, PlaneRef, PlateLayout, WellLayout
from jumpdenoise.io.ngff_markers import clear_done, field_key, mark_done
from jumpdenoise.io.ngff_v04 import DONE_NAMESPACE, export_ngff_v04

CHANNELS = ["DNA", "ER", "Mito"]
WELLS = ("A01", "B03")


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("v04")
    layout = PlateLayout(
        name="V04PLATE", source_kind="phenix", source_path="/nowhere/Index.xml", n_rows=16, n_columns=24,
        channels=[Channel(name=c, source_id=str(i + 1)) for i, c in enumerate(CHANNELS)],
        wells=[WellLayout(row=w[0], column=int(w[1:]), fields=[
            FieldLayout(index=f, site=f + 1, planes={c: PlaneRef(path=f"/nowhere/{w}-{f}-{c}.tiff") for c in CHANNELS})
            for f in range(2)]) for w in WELLS],
        shape=(72, 64), dtype="uint16", pixel_size_um=0.65)
    path = root / "raw.zarr"
    ngff.create_plate(path, layout, ConvertConfig(shard=True, codec="zstd", chunk_yx=32, pyramid_levels=1))
    rng = np.random.default_rng(3)
    for w in WELLS:
        for f in range(2):
            ngff.write_field(path, w, f, rng.integers(0, 4000, size=(3, 72, 64), dtype=np.uint16))
    return {"root": root, "plate": path}


def test_copy_validates_and_keeps_pixels_chunks_and_codec(raw: dict) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Plate, Reader
    from ome_zarr_models.v04.hcs import HCS
    from ome_zarr_models.v04.image import Image

    out = raw["root"] / "v04.zarr"
    res = CliRunner().invoke(app, ["export-zarr", str(raw["plate"]), str(out), "--ngff", "0.4", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "4 field(s) copied, 4 in all" in res.output
    group = zarr.open_group(out, mode="r", zarr_format=2)
    hcs = HCS.from_zarr(group)
    assert hcs.attributes.plate.version == "0.4" and len(hcs.attributes.plate.wells) == 2
    image = Image.from_zarr(group["B/3/1"])
    assert image.attributes.multiscales[0].version == "0.4" and len(image.attributes.multiscales[0].datasets) == 2
    src = zarr.open_group(raw["plate"], mode="r")
    for level in ("0", "1"):
        a, b = src[f"B/3/1/{level}"], group[f"B/3/1/{level}"]
        assert b.metadata.zarr_format == 2 and b.metadata.dimension_separator == "/"
        assert b.chunks == a.chunks and b.shape == a.shape and b.dtype == a.dtype
        assert b.compressors[0].get_config()["cname"] == a.compressors[0].cname.value == "zstd"
        assert np.array_equal(a[...], b[...])
    nodes = list(Reader(parse_url(str(out)))())
    assert isinstance(nodes[0].specs[0], Plate) and nodes[0].specs[0].well_paths == ["A/1", "B/3"]
    res = CliRunner().invoke(app, ["export-zarr", str(raw["plate"]), str(out), "--ngff", "0.5"])
    assert res.exit_code != 0 and "only 0.4" in str(res.exception)


def test_rerun_resumes_and_another_plate_needs_overwrite(raw: dict, tmp_path) -> None:
    out = tmp_path / "v04.zarr"
    export_ngff_v04(raw["plate"], out, workers=1)
    lost = zarr.open_array(out / "A/1/0/0", mode="r+")
    lost[...] = 0
    clear_done(out, field_key("A01", 0), namespace=DONE_NAMESPACE)
    again = export_ngff_v04(raw["plate"], out)
    assert (again.n_copied, again.n_fields) == (1, 4)
    assert np.array_equal(lost[...], ngff.read_field(raw["plate"], "A01", 0))
    other = tmp_path / "other.zarr"
    ngff.create_plate_like(raw["plate"], other, dtype="float32", kind="denoised", wells=["B03"])
    ngff.write_field(other, "B03", 1, np.full((3, 72, 64), 7.5, np.float32))
    mark_done(other, field_key("B03", 1))
    with pytest.raises(OutputExistsError, match="not an unfinished NGFF 0.4 export"):
        export_ngff_v04(other, out)
    copied = export_ngff_v04(other, out, overwrite=True)  # denoised: finished fields only
    assert (copied.n_copied, copied.n_fields) == (1, 2)
    assert float(zarr.open_array(out / "B/3/1/0", mode="r")[...].mean()) == 7.5
