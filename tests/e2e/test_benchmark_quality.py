"""benchmarks/quality.py runs end to end on tiny settings and scores what it claims to score."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FMD = REPO / ".." / "shared" / "data" / "fluo" / "fmd_testset"


def _fmd_or_skip() -> Path:
    if not (FMD / "raw").is_dir():
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"shared FMD test set missing in CI: {FMD}")
        pytest.skip(f"shared FMD test set not present: {FMD}")
    return FMD


def _quality_sets():
    """``benchmarks/quality_sets.py`` as a module (the benchmarks folder is not a package)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import quality_sets
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return quality_sets


def test_quality_benchmark_scores_raw_and_both_trainers(tmp_path: Path) -> None:
    fmd = _fmd_or_skip()
    out = tmp_path / "quality.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--sets", "fmd", "--fmd-types",
         "Confocal_BPAE_B,TwoPhoton_MICE,WideField_BPAE_G", "--fmd-crop", "128", "--minutes", "0.05", "--seeds", "2", "--batch", "4", "--epoch-steps", "2",
         "--val-patches", "4", "--workdir", str(tmp_path), "--json", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    fmd_res = r["results"]["fmd"]
    assert r["sets"]["fmd"]["images"] == 12 and r["sets"]["fmd"]["shape"] == [1, 128, 128]

    # the raw score is the metric of the raw captures against gt/, peak 255
    from PIL import Image

    from jumpdenoise.quality.metrics import score

    def read(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))[:128, :128].astype(float)

    raw = [score(read(fmd / "raw" / f"Confocal_BPAE_B_{k}.png"), read(fmd / "gt" / f"Confocal_BPAE_B_{k}.png"),
                 data_range=255.0) for k in range(1, 5)]
    assert fmd_res["raw"]["groups"]["Confocal_BPAE_B"]["psnr"]["mean"] == pytest.approx(
        np.mean([s["psnr"] for s in raw]), abs=1e-3)
    for method in ("jumpdenoise", "jumpdenoise-network", "careamics"):
        res = fmd_res[method]
        assert len(res["per_seed"]) == 2 and [s["seed"] for s in res["per_seed"]] == [1, 2]
        assert all(steps > 0 for steps in res["steps"]), res["steps"]
        assert np.isfinite(res["psnr"]["mean"]) and 0 < res["ssim"]["mean"] <= 1
        assert set(res["groups"]) == {"Confocal_BPAE_B", "TwoPhoton_MICE", "WideField_BPAE_G"}
        # one model per microscope, trained for its images' share of the budget
        for run in res["per_seed"]:
            assert [m["group"] for m in run["models"]] == ["Confocal", "TwoPhoton", "WideField"]
    for run in fmd_res["jumpdenoise"]["per_seed"]:  # widefield noise is correlated between neighbours
        assert {m["group"]: m["phase_split"] for m in run["models"]} == {"Confocal": 1, "TwoPhoton": 1,
                                                                          "WideField": 2}
    # the gain estimated without truth, next to the true gain of what was written, per seed and per
    # microscope/sample type (each type is its own instrument: its own noise fit and blend weights)
    assert len(fmd_res["estimates"]) == 2
    for seed in fmd_res["estimates"]:
        assert set(seed) == {"Confocal_BPAE_B", "TwoPhoton_MICE", "WideField_BPAE_G"}
        for e in seed.values():
            assert all(0 <= w <= 1 for w in e["blend"]) and e["noise_source"] == "fit"
            assert np.isfinite(e["gain_db"]) and np.isfinite(e["true_gain_db"])
            assert np.isfinite(e["true_gain_offset_free_db"])
        assert 0 < seed["Confocal_BPAE_B"]["noise_neighbour_correlation"] < 0.3  # nearly white noise
        assert 0 < seed["TwoPhoton_MICE"]["noise_neighbour_correlation"] < 0.3
        assert seed["WideField_BPAE_G"]["noise_neighbour_correlation"] > 0.4
        # var(raw - gt) is about 40 for this confocal type and 200 for the two-photon one
        assert seed["TwoPhoton_MICE"]["noise_variance"] > 2.5 * seed["Confocal_BPAE_B"]["noise_variance"]
    texts = [t["text"] for t in r["targets"]]
    assert any("within 1 dB of the true gain" in t for t in texts)
    assert any(t.startswith("fmd: >= +7 dB over raw") for t in texts)
    assert any("jumpdenoise >= CAREamist" in t for t in texts)
    assert "targets:" in proc.stdout and ("PASS" in proc.stdout or "FAIL" in proc.stdout)


def test_offset_free_true_gain_leaves_out_each_capture_offset() -> None:
    qs = _quality_sets()
    ImageSet, true_gains = qs.ImageSet, qs.true_gains
    rng = np.random.default_rng(0)
    truth = [rng.uniform(50, 200, (1, 64, 64)) for _ in range(2)]
    noise = [rng.normal(0, 4, (1, 64, 64)) for _ in range(2)]
    offsets = (3.0, -2.0)  # each capture brighter or darker than the shared truth
    noisy = [t + o + n for t, o, n in zip(truth, offsets, noise)]
    halved = [t + o + n / 2 for t, o, n in zip(truth, offsets, noise)]  # half the noise removed, offsets kept
    data = ImageSet(name="t", keys=["a", "b"], noisy=noisy, truth=truth, channels=["c"], groups=[["c"], ["c"]],
                    data_range=255.0)
    free = true_gains(data, halved, [0, 1], offset_free=True)["c"]
    plain = true_gains(data, halved, [0, 1])["c"]
    assert free == pytest.approx(10 * np.log10(4), abs=0.05)  # the noise's error energy fell 4-fold
    assert plain < free - 1  # against the shared truth the kept offsets weigh in


def test_noise_neighbour_correlation_tells_white_from_correlated_noise() -> None:
    qs = _quality_sets()
    ImageSet, noise_neighbour_correlation = qs.ImageSet, qs.noise_neighbour_correlation
    rng = np.random.default_rng(1)
    truth = [rng.uniform(50, 200, (2, 128, 128)) for _ in range(2)]
    white = [rng.normal(0, 4, (2, 128, 128)) for _ in range(2)]
    # channel 1: each pixel's noise is the mean of two horizontal neighbours' white noise: 0.5 along x, 0 along y
    for n in white:
        n[1, :, :-1] = (n[1, :, :-1] + n[1, :, 1:]) / 2
    data = ImageSet(name="t", keys=["a", "b"], noisy=[t + 5.0 + n for t, n in zip(truth, white)], truth=truth,
                    channels=["white", "smoothed"], groups=[["w", "s"], ["w", "s"]], data_range=255.0)
    r = noise_neighbour_correlation(data, [0, 1])
    assert abs(r["white"]) < 0.02
    assert r["smoothed"] == pytest.approx(0.25, abs=0.03)  # the mean of 0.5 (x) and 0 (y)
