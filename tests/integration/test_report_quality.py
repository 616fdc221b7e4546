"""Report, guard and gain estimates on a real converted plate with ground truth and a real (barely trained) model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jumpdenoise.stages.session import PlateSession
from jumpdenoise.config import load_config
from jumpdenoise.io.ngff import read_field
from jumpdenoise.io.synthetic import generate_plate
from fixtures.models import make_run
from jumpdenoise.quality.gain import estimate_run_gain, read_gain
from jumpdenoise.quality.guard import check_gain_before_predict
from jumpdenoise.quality.metrics import default_data_range, psnr
from jumpdenoise.quality.truth import camera_noise_models, find_truth_dir
from jumpdenoise.stages import report as report_stage
from jumpdenoise.stages.convert import convert
from jumpdenoise.stages.predict import predict

CHANNELS = ("DNA", "ER")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("report")
    source = generate_plate(root / "source", rows=1, columns=2, fields=2, channels=CHANNELS, size=(64, 64), seed=2,
                            noise="low-light", workers=1)
    cfg = load_config(overrides={"source": {"path": str(source)}, "paths": {"workdir": str(root)},
                                 "train": {"patch_size": 32},  # 64 x 64 fields, phase sub-images of 32 x 32
                                 "executor": {"kind": "local", "workers": 1}})
    convert(cfg)
    raw = Path(cfg.paths.raw_plate)
    fields = [read_field(raw, w, f) for w in ("A01", "A02") for f in (0, 1)]
    mean = [float(np.mean([f[c].mean() for f in fields])) for c in range(2)]
    std = [float(np.mean([f[c].std() for f in fields])) for c in range(2)]
    run = make_run(Path(cfg.paths.run_dir), channels=CHANNELS, steps=2, mean=mean, std=std)  # barely trained
    truth_dir = find_truth_dir(raw)
    record = estimate_run_gain(run, fields[2:], list(CHANNELS), noise_models=camera_noise_models(truth_dir))
    return {"root": root, "cfg": cfg, "raw": raw, "run": run, "truth": truth_dir, "record": record}


def test_truth_is_found_next_to_the_source_and_gain_is_stored(setup: dict) -> None:
    assert setup["truth"] == setup["root"] / "source" / "ground_truth"
    stored = json.loads((setup["run"] / "quality.json").read_text())
    assert stored["channels"]["DNA"]["noise_source"] == "camera"
    gains = read_gain(setup["run"])
    assert set(gains) == set(CHANNELS)
    for ch in CHANNELS:
        entry = stored["channels"][ch]
        assert entry["network_gain_db"] <= 0  # the barely trained network alone would harm ...
        # ... so its smooth part is left out (the raw image's is kept): what is written does not harm
        assert all(0 <= w <= 1 for w in entry["blend"]) and entry["blend"][0] < 0.5 and gains[ch] >= 0


def test_guard_lets_a_blended_model_through(setup: dict) -> None:
    assert check_gain_before_predict(setup["cfg"]) is None


def test_predicted_plate_scored_against_truth_in_the_report(setup: dict) -> None:
    cfg, raw = setup["cfg"], setup["raw"]
    den = predict(model=setup["run"], plate=raw, out=cfg.paths.denoised_plate)

    paths = report_stage.run_one(cfg, report_stage.plan(cfg)[0], PlateSession())
    rep = json.loads(Path(paths["json"]).read_text())
    md = Path(paths["markdown"]).read_text()
    # PSNR against truth, recomputed here from the files
    for c, ch in enumerate(CHANNELS):
        raw_psnr, den_psnr = [], []
        for w, f in [("A01", 0), ("A01", 1), ("A02", 0), ("A02", 1)]:
            truth = np.load(setup["truth"] / f"{w}-{f}.npy")[c]
            rng = default_data_range(truth)
            raw_psnr.append(psnr(read_field(raw, w, f)[c], truth, rng))
            den_psnr.append(psnr(read_field(den, w, f)[c], truth, rng))
        row = rep["channels"][ch]
        assert row["truth"]["raw"]["psnr"] == pytest.approx(np.mean(raw_psnr))
        assert row["truth"]["denoised"]["psnr"] == pytest.approx(np.mean(den_psnr))
        assert row["gain_db"] == pytest.approx(np.mean(den_psnr) - np.mean(raw_psnr))
        assert row["worse"] == (row["gain_db"] <= 0)
        assert row["estimated"]["gain_db"] == pytest.approx(read_gain(setup["run"])[ch])
        assert row["gain_db"] >= -0.1 and row["estimated"]["gain_db"] == pytest.approx(row["gain_db"], abs=1.0)
        with Image.open(setup["root"] / row["figure"]) as img:
            assert img.format == "PNG" and np.asarray(img.convert("L")).std() > 5
        assert f"]({row['figure']})" in md
    assert "high-pass noise estimate" in md and "noise reduction" not in md and "blend weight" in md
    assert rep["truth"] == str(setup["truth"])


def test_report_without_truth_uses_the_estimated_gain(setup: dict) -> None:
    cfg = setup["cfg"]
    rep = report_stage.build_report(setup["raw"], Path(cfg.paths.denoised_plate), truth_dir=None,
                                    run_dir=setup["run"])
    for ch in CHANNELS:
        row = rep["channels"][ch]
        assert row["truth"] is None and row["bias_reference"] == "raw mean"
        assert row["gain_db"] == pytest.approx(read_gain(setup["run"])[ch]) and not row["worse"]
    md = report_stage.render_markdown(rep)
    assert "ground truth: none" in md and "WORSE than raw" not in md
    # the run folder (trained on whole fields) has no noise_correlation.json
    assert rep["phase_split"] == 1 and "phase sub-images" not in md
    assert "trained and predicted on 2x2 phase sub-images" in report_stage.render_markdown({**rep, "phase_split": 2})


def test_train_stage_finalize_writes_quality_json(setup: dict) -> None:
    from jumpdenoise.stages import train as train_stage

    quality = setup["run"] / "quality.json"
    quality.unlink()
    train_stage.finalize(setup["cfg"], [], PlateSession())
    record = json.loads(quality.read_text())
    assert set(record["channels"]) == set(CHANNELS) and record["fields"]
    assert all(record["channels"][ch]["noise_source"] == "camera" for ch in CHANNELS)  # truth.json's camera
    mtime = quality.stat().st_mtime_ns
    train_stage.finalize(setup["cfg"], [], PlateSession())  # up to date: not recomputed
    assert quality.stat().st_mtime_ns == mtime
