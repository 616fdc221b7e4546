"""export-tiff: dtype, clipping, compression, CellProfiler's intensity scale, extra CSV columns.

CellProfiler itself is not run here: cellprofiler-core 4.2.8 installs with ``--no-deps``
but reads 2-D TIFFs through python-javabridge, which does not build against numpy 2 (tried
on Python 3.11, numpy 2.x, OpenJDK 17). :func:`cellprofiler_intensity` reproduces instead
what LoadData does with "Rescale intensities?: Yes" (cellprofiler_core 4.2.8
``FileImage.__set_image`` -> python-bioformats ``ImageReader.read(rescale=True)``, and
CellProfiler 5's ``BioformatsReader.read(wants_metadata_rescale=True)``): the pixels are
divided by Bio-Formats' ``MaxSampleValue``, the TIFF tag 281 when present, else
``2**bits - 1`` (65535 for uint16, 2**32 - 1 for float32, the factor measured with
headless CellProfiler in issue 15).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from jumpdenoise.cli import app
from jumpdenoise.config import ConvertConfig
from jumpdenoise.errors import ConfigError, SourceError
from jumpdenoise.io import ngff
from jumpdenoise.io.layout import Channel, FieldLayout, PlaneRef, PlateLayout, WellLayout
from jumpdenoise.io.ngff_markers import field_key, mark_done
from jumpdenoise.predict.export_csv import ExtraColumns
from jumpdenoise.predict.export_tiff import export_tiff, to_export_dtype

CHANNELS = ["DNA", "ER"]
WELLS = ("A01", "B02")


def cellprofiler_intensity(path: Path) -> np.ndarray:
    """The image LoadData gives the pipeline for the TIFF ``path`` (see the module docstring)."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        image = page.asarray()
        tag = page.tags.get(281)
        scale = float(tag.value) if tag is not None else float(2 ** (8 * image.dtype.itemsize) - 1)
    return image.astype(np.float32) / scale


@pytest.fixture(scope="module")
def plates(tmp_path_factory) -> dict:
    """A raw uint16 plate (its fields also as Phenix-like TIFFs) and a float32 'denoised' copy.

    The denoised DNA channel of A01/0 holds 3 values outside uint16 (-7, 70000, NaN).
    """
    root = tmp_path_factory.mktemp("export_tiff")
    layout = PlateLayout(
        name="PLATE1", source_kind="phenix", source_path=str(root / "Index.xml"), n_rows=16, n_columns=24,
        channels=[Channel(name=c, source_id=str(i + 1)) for i, c in enumerate(CHANNELS)],
        wells=[WellLayout(row=w[0], column=int(w[1:]), fields=[
            FieldLayout(index=f, site=f + 1, planes={c: PlaneRef(path=str(root / f"{w}f{f}{c}.tiff"))
                                                     for c in CHANNELS}) for f in range(2)]) for w in WELLS],
        shape=(48, 40), dtype="uint16", pixel_size_um=0.6)
    raw, den = root / "raw.zarr", root / "den.zarr"
    ngff.create_plate(raw, layout, ConvertConfig(pyramid_levels=0))
    ngff.create_plate_like(raw, den, dtype="float32", kind="denoised")
    rng = np.random.default_rng(0)
    for w in WELLS:
        for f in range(2):
            pixels = rng.integers(200, 3000, size=(2, 48, 40), dtype=np.uint16)
            ngff.write_field(raw, w, f, pixels)
            for c, ch in enumerate(CHANNELS):
                tifffile.imwrite(root / f"{w}f{f}{ch}.tiff", pixels[c], compression="lzw")
            smooth = pixels.astype(np.float32) * 0.995 + 0.26
            if (w, f) == ("A01", 0):
                smooth[0, 0, :3] = [-7.0, 70000.0, np.nan]
            ngff.write_field(den, w, f, smooth)
            if (w, f) != ("B02", 1):
                mark_done(den, field_key(w, f))
    return {"root": root, "raw": raw, "den": den}


def test_to_export_dtype_rounds_clips_and_counts() -> None:
    out, n = to_export_dtype(np.array([-0.6, 0.4, 1.5, 65535.4, 65535.6, np.nan], np.float32), np.dtype("uint16"))
    assert out.dtype == np.uint16 and out.tolist() == [0, 0, 2, 65535, 65535, 0] and n == 3
    same = np.arange(4, dtype=np.uint16)
    assert to_export_dtype(same, np.dtype("uint16"))[0].tolist() == [0, 1, 2, 3]


def test_default_export_is_source_dtype_lzw_and_reads_on_the_raw_scale(plates: dict, tmp_path: Path) -> None:
    result = export_tiff(plates["den"], tmp_path / "out")
    assert result.dtype == "uint16" and result.n_fields == 3 and result.clipped == {"DNA": 3, "ER": 0}
    names = sorted(p.name for p in (tmp_path / "out").glob("*.tiff"))
    assert len(names) == 6 and "B02f1DNA.tiff" not in names  # B02/1 is not done
    with tifffile.TiffFile(tmp_path / "out" / "A01f0DNA.tiff") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.LZW
        exported = tif.pages[0].asarray()
    denoised = ngff.read_field(plates["den"], "A01", 0)[0]
    assert exported[0, :3].tolist() == [0, 65535, 0]
    assert np.array_equal(exported[1:], np.rint(denoised[1:]).astype(np.uint16))
    for name in names:
        raw_mean = cellprofiler_intensity(plates["root"] / name)[1:].mean()
        den_mean = cellprofiler_intensity(tmp_path / "out" / name)[1:].mean()
        assert abs(den_mean / raw_mean - 1) < 0.01, name


def test_float32_export_carries_the_scale_cellprofiler_needs(plates: dict, tmp_path: Path) -> None:
    result = export_tiff(plates["den"], tmp_path / "out", dtype="float32", compression=None, wells=["B02"])
    assert result.dtype == "float32" and result.n_fields == 1 and result.clipped == {"DNA": 0, "ER": 0}
    path = tmp_path / "out" / "B02f0ER.tiff"
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].tags[281].value == 65535 and tif.pages[0].compression == tifffile.COMPRESSION.NONE
        assert np.array_equal(tif.pages[0].asarray(), ngff.read_field(plates["den"], "B02", 0)[1])
    raw_mean = cellprofiler_intensity(plates["root"] / path.name).mean()
    assert abs(cellprofiler_intensity(path).mean() / raw_mean - 1) < 0.01
    # the same pixels without the tag: what CellProfiler measured before (about 65,537 times too small)
    tifffile.imwrite(tmp_path / "untagged.tiff", ngff.read_field(plates["den"], "B02", 0)[1])
    assert raw_mean / cellprofiler_intensity(tmp_path / "untagged.tiff").mean() > 60000
    with pytest.raises(ConfigError, match="--dtype"):
        export_tiff(plates["den"], tmp_path / "bad", dtype="float64")


def test_cli_adds_metadata_and_illumination_columns_for_a_phenix_plate(plates: dict, tmp_path: Path) -> None:
    illum = tmp_path / "illum"
    illum.mkdir()
    for ch in CHANNELS:
        np.save(illum / f"PLATE1_Illum{ch}.npy", np.ones((48, 40), np.float32))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["export-tiff", str(plates["den"]), str(out), "--wells", "A01",
                                   "--metadata", "Source=source_4", "--metadata", "Batch=2021_Batch1",
                                   "--illum-dir", str(illum)])
    assert res.exit_code == 0, res.output
    assert "2 field(s) as uint16" in res.output and "DNA 3, ER 0" in res.output
    with open(out / "load_data.csv") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames[-6:] == ["Metadata_Source", "Metadata_Batch", "FileName_IllumDNA", "PathName_IllumDNA",
                                      "FileName_IllumER", "PathName_IllumER"]
    assert [(r["Metadata_Well"], r["Metadata_Site"]) for r in rows] == [("A01", "1"), ("A01", "2")]
    assert rows[0]["FileName_OrigDNA"] == "A01f0DNA.tiff" and rows[0]["PathName_OrigER"] == str(out.resolve())
    assert rows[1]["Metadata_Source"] == "source_4" and rows[1]["Metadata_Batch"] == "2021_Batch1"
    assert rows[1]["FileName_IllumER"] == "PLATE1_IllumER.npy" and rows[1]["PathName_IllumER"] == str(illum.resolve())
    assert all((Path(r["PathName_OrigDNA"]) / r["FileName_OrigDNA"]).is_file() for r in rows)


def test_missing_illumination_function_and_bad_metadata_are_named(plates: dict, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"PLATE1_IllumDNA\.npy"):
        ExtraColumns(illum_dir=tmp_path).columns("PLATE1", CHANNELS)
    with pytest.raises(ConfigError, match="Bad Key"):
        ExtraColumns(metadata={"Bad Key": "x"})
    res = CliRunner().invoke(app, ["export-tiff", str(plates["den"]), str(tmp_path / "o"), "--metadata", "Source"])
    assert isinstance(res.exception, ConfigError) and "KEY=VALUE" in str(res.exception)
