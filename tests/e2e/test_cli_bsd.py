"""End-to-end test of ``jumpdenoise bsd``: the real console script, real training and prediction (small)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jumpdenoise import bsd

SHARED_BSD = Path(__file__).resolve().parents[3] / "shared" / "data" / "bsd"


def _cli() -> str:
    exe = Path(sys.executable).with_name("jumpdenoise")
    return str(exe) if exe.exists() else shutil.which("jumpdenoise") or "jumpdenoise"


def _sets(tmp_path: Path) -> tuple[Path, Path]:
    """Real Train400/Set12 (a few images are used) when shared data is present, else stand-in PNGs."""
    train, test, _ = bsd.resolve_bsd_sets(SHARED_BSD.parent, tmp_path)
    return train, test


@pytest.mark.slow
def test_bsd_command_trains_denoises_and_prints_scores(tmp_path: Path) -> None:
    train, test = _sets(tmp_path)
    out = tmp_path / "run"
    proc = subprocess.run([_cli(), "bsd", "--train", str(train), "--test", str(test), "--sigma", "25",
                           "--schedule", "ci", "--epochs", "2", "--n-train", "12", "--n-test", "2",
                           "--seed", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out / "bsd_scores.csv") as fh:
        rows = list(csv.DictReader(fh))
    names = sorted(p.stem for p in test.glob("*.png"))[:2]
    assert [r["image"] for r in rows] == [*names, "mean"]
    for r in rows:
        # unclipped sigma-25 noise: 20*log10(255/25) = 20.17 dB on any image
        assert float(r["noisy_psnr"]) == pytest.approx(20.17, abs=0.1)
        assert 0 < float(r["denoised_ssim"]) <= 1
    # even a tiny model removes part of sigma-25 noise
    assert float(rows[-1]["denoised_psnr"]) > float(rows[-1]["noisy_psnr"]) + 1.0
    for name in names:
        assert name in proc.stdout
    assert "mean" in proc.stdout and f"{float(rows[-1]['denoised_psnr']):.2f}" in proc.stdout
    summary = json.loads((out / "bsd_summary.json").read_text())
    assert summary["n_train"] == 12 and summary["n_test"] == 2 and summary["sigma"] == 25
    assert (out / "model" / "normalization.json").is_file()


def test_bsd_command_names_a_missing_folder(tmp_path: Path) -> None:
    proc = subprocess.run([_cli(), "bsd", "--train", str(tmp_path / "nope"), "--test", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"image folder not found: {tmp_path / 'nope'}" in proc.stderr


def _scores(path: Path) -> dict[str, dict[str, float]]:
    with open(path) as fh:
        return {r["image"]: {k: float(v) for k, v in r.items() if k != "image"} for r in csv.DictReader(fh)}


@pytest.mark.slow
def test_budget_schedule_stops_at_its_deadline_exports_and_the_model_rescores_alike(tmp_path: Path) -> None:
    train, test = _sets(tmp_path)
    out, zip_path = tmp_path / "run", tmp_path / "run" / "bsd_model.zip"
    proc = subprocess.run([_cli(), "bsd", "--train", str(train), "--test", str(test), "--schedule", "budget",
                           "--max-minutes", "0.2", "--n-train", "6", "--n-test", "2", "--device", "cpu",
                           "--patch-size", "32", "--batch-size", "4", "--out", str(out), "--export", str(zip_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Time limit reached" in proc.stderr  # the deadline stopped training, not the epoch count
    summary = json.loads((out / "bsd_summary.json").read_text())
    assert summary["schedule"] == "budget" and summary["max_minutes"] == 0.2 and summary["n_train"] == 6
    assert summary["train_settings"]["trainer"]["precision"] == "32-true"
    with open(out / "model" / "curves.csv") as fh:
        curve = list(csv.DictReader(fh))
    peak = summary["train_settings"]["optimizer"]["lr"]
    assert curve and 0 < float(curve[-1]["learning_rate"]) < 0.9 * peak  # warm-up and decay, not a constant
    assert zip_path.is_file() and zip_path.stat().st_size < 25 * 2**20
    trained = _scores(out / "bsd_scores.csv")

    rescored = tmp_path / "rescored"
    proc = subprocess.run([_cli(), "bsd", "--model", str(zip_path), "--test", str(test), "--n-test", "2",
                           "--device", "cpu", "--out", str(rescored)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = _scores(rescored / "bsd_scores.csv")
    assert list(again) == list(trained)
    for name, row in trained.items():  # same weights, same seeded noise: the same scores
        assert again[name]["noisy_psnr"] == pytest.approx(row["noisy_psnr"], abs=1e-9)
        assert again[name]["denoised_psnr"] == pytest.approx(row["denoised_psnr"], abs=1e-3)
    assert f"{again['mean']['denoised_psnr']:.2f}" in proc.stdout
    assert json.loads((rescored / "bsd_summary.json").read_text())["model"] == str(zip_path)


def test_bsd_command_needs_train_or_model_and_names_a_missing_model(tmp_path: Path) -> None:
    proc = subprocess.run([_cli(), "bsd", "--test", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "give --train" in proc.stderr
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "a.png")
    proc = subprocess.run([_cli(), "bsd", "--model", str(tmp_path / "nope.zip"), "--test", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"model {tmp_path / 'nope.zip'} not found" in proc.stderr
