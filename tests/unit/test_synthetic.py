"""Synthetic plates: real Phenix layout, discoverable, cell-like, noisy, reproducible."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest
import tifffile

from jumpdenoise.config import SourceConfig
from jumpdenoise.io.discovery import discover
from jumpdenoise.io.tiff import read_source_field
from jumpdenoise.io.synthetic import generate_plate, noise_models

CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    images = generate_plate(out, plate_name="SYN-1", rows=2, columns=3, fields=2, size=(128, 160), seed=3, missing=3)
    return out, images


def test_layout_round_trip(plate):
    out, images = plate
    assert images == out / "Images" and (images / "Index.idx.xml").is_file()
    layout = discover(SourceConfig(path=out))  # auto: finds Images/Index.idx.xml
    assert layout.source_kind == "phenix" and layout.name == "SYN-1"
    assert layout.channel_names == list(CHANNELS)
    assert (layout.n_rows, layout.n_columns) == (2, 3)
    assert [w.id for w in layout.wells] == ["A01", "A02", "A03", "B01", "B02", "B03"]
    assert all([f.site for f in w.fields] == [1, 2] for w in layout.wells)
    assert layout.shape == (128, 160) and layout.dtype == "uint16"
    assert layout.pixel_size_um == pytest.approx(0.598, abs=1e-3)
    assert len(layout.missing) == 3 and layout.n_images() == 2 * 3 * 2 * 5 - 3
    for m in layout.missing:
        assert not (images / m.path.rsplit("/", 1)[-1]).exists()
    assert len(list(images.glob("*.tiff"))) == 57


def test_tiffs_look_like_phenix_files(plate):
    _, images = plate
    with tifffile.TiffFile(images / "r02c03f02p01-ch1sk1fk1fl1.tiff") as tif:
        page = tif.pages[0]
        assert len(tif.pages) == 1 and page.dtype == np.uint16 and page.shape == (128, 160)
        assert page.compression == 5 and len(page.dataoffsets) == 1  # LZW, one strip
        assert "ImageDescription" not in page.tags


def test_pixels_noisy_versions_of_ground_truth(plate):
    out, _ = plate
    layout = discover(SourceConfig(path=out / "Images"))
    well = layout.well("B02")
    for field in well.fields:
        noisy = read_source_field(field, list(CHANNELS), layout.shape, layout.dtype).astype(np.float64)
        clean = np.load(out / "ground_truth" / f"B02-{field.index}.npy")
        assert clean.shape == (5, 128, 160) and clean.dtype == np.float32
        assert noisy.min() >= 0 and noisy.max() <= 65535
        for c in range(5):
            assert abs(noisy[c].mean() - clean[c].mean()) < 0.02 * clean[c].mean()
            residual = noisy[c] - clean[c]
            assert 2 < residual.std() < 0.5 * clean[c].std() + 50  # noisy, but signal dominates
            assert np.corrcoef(noisy[c].ravel(), clean[c].ravel())[0, 1] > 0.8
        # channels carry different structures
        corr = np.corrcoef(clean.reshape(5, -1))
        assert corr[0, 4] < 0.9 and corr[0, 3] < 0.9


def test_reproducible_and_parallel_identical(tmp_path):
    kw = dict(rows=1, columns=2, fields=2, size=(64, 64), seed=11, ground_truth=False)
    a = generate_plate(tmp_path / "a", workers=1, **kw)
    b = generate_plate(tmp_path / "b", workers=2, **kw)
    c = generate_plate(tmp_path / "c", workers=1, **{**kw, "seed": 12})
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and len(names) == 1 + 2 * 2 * 5
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == []
    assert not filecmp.cmp(a / "r01c02f01p01-ch1sk1fk1fl1.tiff", c / "r01c02f01p01-ch1sk1fk1fl1.tiff", shallow=False)
    assert not (tmp_path / "a" / "ground_truth").exists()


def test_brightfield_like_and_custom_names(tmp_path):
    images = generate_plate(tmp_path, rows=1, columns=1, fields=1, size=(64, 64),
                            channels=("HOECHST 33342", "Brightfield"))
    layout = discover(SourceConfig(path=images, channel_map={"HOECHST 33342": "DNA"}))
    assert layout.channel_names == ["DNA", "Brightfield"]
    data = read_source_field(layout.wells[0].fields[0], layout.channel_names, layout.shape, layout.dtype)
    assert data[1].mean() > 5 * data[0].mean()  # bright flat field vs dark background


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate_plate(tmp_path, rows=0)
    with pytest.raises(ValueError, match="missing"):
        generate_plate(tmp_path, rows=1, columns=1, fields=1, size=(32, 32), missing=99)


def _ratio_to_noise(truth: np.ndarray, model) -> float:
    """(p99 - p1) of the expected image over the noise sigma at its median level."""
    p1, p99 = np.percentile(truth, [1, 99])
    return float((p99 - p1) / np.sqrt(model.variance(np.median(truth))))


def test_noise_levels_truth_json_and_photon_scaling(tmp_path):
    kw = dict(rows=1, columns=2, fields=2, size=(128, 128), seed=5)
    generate_plate(tmp_path / "jump", **kw)
    generate_plate(tmp_path / "low", noise="low-light", **kw)
    meta = json.loads((tmp_path / "jump" / "ground_truth" / "truth.json").read_text())
    low_meta = json.loads((tmp_path / "low" / "ground_truth" / "truth.json").read_text())
    assert meta["channels"] == list(CHANNELS) and meta["noise_level"] == "jump"
    assert low_meta["noise_level"] == "low-light" and low_meta["noise_model"] == meta["noise_model"]
    models = noise_models(CHANNELS)
    for name in CHANNELS:
        assert meta["noise_model"][name] == pytest.approx(models[name].as_dict())
        assert set(meta["noise_model"][name]) == {"gain", "offset", "read_noise", "correlation"}
    jump = np.load(tmp_path / "jump" / "ground_truth" / "A02-1.npy")
    low = np.load(tmp_path / "low" / "ground_truth" / "A02-1.npy")
    for c, name in enumerate(CHANNELS):
        offset = models[name].offset
        # same cells, 10x fewer photons above the offset
        np.testing.assert_allclose(low[c] - offset, (jump[c] - offset) / 10, rtol=1e-4, atol=1e-2)
        # signal-to-noise of the real fields at "jump" ((p99 - p1) / sigma 29..432 on the real fields)
        assert 29 <= _ratio_to_noise(jump[c], models[name]) <= 432
        assert _ratio_to_noise(low[c], models[name]) < _ratio_to_noise(jump[c], models[name]) / 2.5


def test_noise_matches_the_model(tmp_path):
    generate_plate(tmp_path, rows=1, columns=1, fields=1, size=(256, 256), seed=2, noise="low-light")
    layout = discover(SourceConfig(path=tmp_path / "Images"))
    noisy = read_source_field(layout.wells[0].fields[0], list(CHANNELS), layout.shape, layout.dtype).astype(np.float64)
    truth = np.load(tmp_path / "ground_truth" / "A01-0.npy").astype(np.float64)
    models = noise_models(CHANNELS)
    for c, name in enumerate(CHANNELS):
        z = (noisy[c] - truth[c]) / np.sqrt(models[name].variance(truth[c]) + 1 / 12)  # + rounding to integers
        assert abs(z.mean()) < 0.05 and 0.95 < z.std() < 1.05
        # shared between neighbours as on the real fields
        rows = float(np.mean(z[:, 1:] * z[:, :-1]) / z.var())
        cols = float(np.mean(z[1:] * z[:-1]) / z.var())
        assert rows == pytest.approx(models[name].correlation, abs=0.03)
        assert cols == pytest.approx(models[name].correlation, abs=0.03)


def test_unknown_noise_level_names_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match="'jump', 'low-light'"):
        generate_plate(tmp_path, rows=1, columns=1, fields=1, size=(32, 32), noise="loud")
