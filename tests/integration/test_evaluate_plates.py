"""``jumpdenoise evaluate`` and the evaluate stage on small real OME-Zarr plates (with and without truth)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from jumpdenoise.stages.session import PlateSession
from jumpdenoise.config import load_config
from jumpdenoise.config.evaluate import EvaluateConfig
from jumpdenoise.errors import ConfigError
from jumpdenoise.stages import evaluate as stage
from fixtures.plates import write_plate

CHANNELS = ["DNA", "ER", "AGP"]
KEYS = [("A01", 0), ("A01", 1), ("B02", 0)]


def _clean_field(seed: int, size: int = 128) -> np.ndarray:
    """(DNA, ER, AGP) expected images in ADU: round nuclei, textured cytoplasm, bright cell borders."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size))
    centres = [(y + rng.integers(-3, 4), x + rng.integers(-3, 4))
               for y in range(20, size - 10, 36) for x in range(20, size - 10, 36)]
    nuclei = np.zeros((size, size), np.float32)
    cells = np.zeros((size, size), np.int32)
    for k, (cy, cx) in enumerate(centres, 1):
        r = rng.uniform(6, 9)
        nuclei[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(1500, 3000)
        cells[(yy - cy) ** 2 + (xx - cx) ** 2 < 16 ** 2] = k
    texture = ndi.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 2) * 4 + 1
    er = np.where(cells > 0, 600.0, 0.0) * np.clip(texture, 0, None)
    agp = np.where(cells > 0, 500.0, 0.0) + (ndi.morphological_gradient(cells, size=3) > 0) * 2500.0
    clean = np.stack([nuclei, er, agp]).astype(np.float32)
    return ndi.gaussian_filter(clean, (0, 1, 1)) + 300.0


@pytest.fixture(scope="module")
def plates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(7)
    truth, raw, den = {}, {}, {}
    for i, key in enumerate(KEYS):
        clean = _clean_field(i)
        noisy = clean + rng.normal(0, 1, clean.shape) * np.sqrt(clean) * 3
        truth[key] = clean
        raw[key] = np.clip(np.rint(noisy), 0, 65535).astype(np.uint16)
        den[key] = ndi.gaussian_filter(noisy, (0, 1.2, 1.2)).astype(np.float32)
    truth_dir = root / "source" / "ground_truth"
    truth_dir.mkdir(parents=True)
    order = ["AGP", "DNA", "ER"]  # truth.json's order differs from the plate's
    for (well, field), clean in truth.items():
        np.save(truth_dir / f"{well}-{field}.npy", clean[[CHANNELS.index(c) for c in order]])
    (truth_dir / "truth.json").write_text(json.dumps({"channels": order}))
    return {"raw": write_plate(root / "raw.zarr", raw, CHANNELS),
            "denoised": write_plate(root / "den.zarr", den, CHANNELS),
            "truth": truth_dir, "root": root}


@pytest.fixture(scope="module")
def with_truth(plates: dict[str, Path]) -> Path:
    out = plates["root"] / "eval-truth"
    stage.evaluate_plates(plates["raw"], plates["denoised"], out, truth=plates["truth"])
    return out


def _features(out: Path) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in sorted((out / "wells").glob("*.features.csv.gz"))], ignore_index=True)


def test_every_version_is_measured_on_the_truth_masks(plates: dict[str, Path], with_truth: Path) -> None:
    from jumpdenoise.evaluate.segment import segment_field

    table = _features(with_truth)
    assert set(table.version) == {"truth", "raw", "denoised"}
    objects = {v: sorted(map(tuple, g[["well", "field", "object", "label"]].to_numpy().tolist()))
               for v, g in table.groupby("version")}
    assert objects["raw"] == objects["truth"] == objects["denoised"] and len(objects["truth"]) >= 2 * 3 * 9
    area = table.pivot_table(index=["well", "field", "object", "label"], columns="version", values="sizeshape:Area")
    np.testing.assert_array_equal(area["raw"], area["truth"])
    np.testing.assert_array_equal(area["denoised"], area["truth"])
    masks = np.load(with_truth / "wells" / "A01.masks.npz")
    clean = np.load(plates["truth"] / "A01-0.npy")  # AGP, DNA, ER
    nuclei, cells = segment_field(clean[1], clean[0])
    np.testing.assert_array_equal(masks["nuclei"], nuclei)
    np.testing.assert_array_equal(masks["cells"], cells)


def test_well_features_equal_cp_measure_on_the_raw_pixels(plates: dict[str, Path], with_truth: Path) -> None:
    from cp_measure.featurizer import featurize, make_featurizer_config

    from jumpdenoise.io.ngff import plate_info, read_field

    masks = np.load(with_truth / "wells" / "A01.masks.npz")
    raw = read_field(plates["raw"], "A01", 0).astype(np.float32)
    maxima = plate_info(plates["raw"]).statistics["plate"]
    image = np.clip(raw / np.array([maxima[c]["max"] for c in CHANNELS], np.float32)[:, None, None], 0, 1)[None]
    config = make_featurizer_config(CHANNELS, objects=["nuclei", "cells"], texture=False, granularity=False,
                                    radial_distribution=False, radial_zernikes=False, sizeshape=False, zernike=False,
                                    feret=False, correlation_pearson=False, correlation_costes=False,
                                    correlation_manders_fold=False, correlation_rwc=False)
    data, columns, rows = featurize(image, np.stack([masks["nuclei"], masks["cells"]])[None], config)
    table = _features(with_truth)
    mine = table[(table.version == "raw") & (table.well == "A01") & (table.field == 0)]
    assert list(zip(mine.object, mine.label)) == [(r[1], int(r[2])) for r in rows]
    np.testing.assert_allclose(mine[[f"intensity:{c}" for c in columns]].to_numpy(), data, rtol=1e-6, atol=1e-12)


def test_report_with_truth(with_truth: Path) -> None:
    summary = json.loads((with_truth / "evaluate.json").read_text())
    assert summary["reference"] == "truth" and summary["versions"] == ["raw", "denoised"] and summary["not_made"] == []
    for version in ("raw", "denoised"):
        head = summary["headline"][version]
        assert 0.5 < head["median_feature_r"] <= 1.0
        assert set(head["segmentation_f1"]) == {"nuclei", "cells"} and head["segmentation_f1"]["nuclei"] > 0.8
        assert head["median_profile_distance"] > 0
    families = pd.read_csv(with_truth / "families.csv")
    assert set(families.family) == {"intensity", "texture", "granularity", "radial_distribution", "correlation",
                                    "sizeshape"}
    size = families[families.family == "sizeshape"].median_r
    assert np.allclose(size, 1.0)  # shapes come from the shared masks
    distances = pd.read_csv(with_truth / "profile_distances.csv")
    assert sorted(set(distances.well)) == ["A01", "B02"] and set(distances.version) == {"raw", "denoised"}
    assert (with_truth / "evaluate_families.png").stat().st_size > 5000
    assert (with_truth / "evaluate_masks.png").stat().st_size > 5000
    assert "Denoising lowers the correlation with the truth for" in (with_truth / "evaluate.md").read_text()


def test_plate_without_truth_gives_the_raw_vs_denoised_report(plates: dict[str, Path]) -> None:
    out = plates["root"] / "eval-no-truth"
    summary = stage.evaluate_plates(plates["raw"], plates["denoised"], out, settings=EvaluateConfig(wells=["B02"]))
    assert summary["reference"] == "raw" and summary["versions"] == ["denoised"]
    assert any("no truth" in item for item in summary["not_made"])
    assert set(_features(out).version) == {"raw", "denoised"}
    seg = pd.read_csv(out / "segmentation.csv")
    assert set(seg.version) == {"denoised"} and set(seg.reference) == {"raw"}
    text = (out / "evaluate.md").read_text()
    assert "## Not compared" in text and "denoised vs raw" in text


def test_bad_channel_name_is_a_clear_error(plates: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=r"evaluate.cells_channel: no channel 'Actin' in .*\['DNA', 'ER', 'AGP'\]"):
        stage.evaluate_plates(plates["raw"], plates["denoised"], plates["root"] / "bad",
                              settings=EvaluateConfig(cells_channel="Actin"))


def test_stage_runs_from_the_pipeline_configuration(plates: dict[str, Path]) -> None:
    root = plates["root"]
    base = {"paths": {"workdir": str(root / "run"), "raw_plate": str(plates["raw"]),
                      "denoised_plate": str(plates["denoised"])}}
    assert not stage.is_enabled(load_config(overrides=base))
    cfg = load_config(overrides={**base, "source": {"path": str(root / "source" / "Images")},
                                 "evaluate": {"wells": ["B02"], "families": ["intensity"]}})
    request = stage.request_of(cfg)
    assert stage.is_enabled(cfg) and request.truth == plates["truth"] and request.out == root / "run" / "evaluate"
    stage.prepare(cfg, PlateSession())
    units = stage.plan(cfg)
    assert [(u.key, u.items) for u in units] == [("B02", ["B02/0"])]
    stage.run_one(cfg, units[0], PlateSession())
    assert stage.plan(cfg) == []  # done wells are not planned again
    summary = stage.finalize(cfg, [], PlateSession())
    assert summary["reference"] == "truth"
    assert json.loads((request.out / "evaluate.json").read_text())["wells"] == ["B02"]


def test_cli_exit_codes(plates: dict[str, Path]) -> None:
    out = plates["root"] / "eval-cli"
    cmd = [sys.executable, "-m", "jumpdenoise", "evaluate", str(plates["raw"]), str(plates["denoised"]), str(out),
           "--truth", str(plates["truth"]), "--wells", "B02"]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "denoised vs truth: median feature r" in ok.stdout and (out / "evaluate.json").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    bad = subprocess.run(cmd + ["--overwrite", "--nuclei-channel", "Hoechst"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no channel 'Hoechst'" in bad.stderr and "['DNA', 'ER', 'AGP']" in bad.stderr
