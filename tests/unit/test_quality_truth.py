"""Finding and reading a plate's ground truth: explicit folder, truth.json channels, camera noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jumpdenoise.quality.truth import TruthError, camera_noise_models, find_truth_dir, read_truth, truth_fields


def _truth_folder(tmp_path: Path, names: list[str] | None) -> Path:
    folder = tmp_path / "ground_truth"
    folder.mkdir()
    np.save(folder / "A01-0.npy", np.stack([np.full((4, 5), 10.0 * (i + 1), np.float32) for i in range(3)]))
    np.save(folder / "B02-1.npy", np.zeros((3, 4, 5), np.float32))
    if names is not None:
        (folder / "truth.json").write_text(json.dumps({
            "channels": names, "noise_level": "jump",
            "noise_model": {n: {"gain": 0.2, "offset": 300.0, "read_noise": 9.0} for n in names}}))
    return folder


def test_channels_follow_truth_json_not_the_plate_order(tmp_path: Path) -> None:
    folder = _truth_folder(tmp_path, ["ER", "DNA", "Mito"])
    got = read_truth(folder, "A01", 0, ["DNA", "Mito"], plate_channels=["DNA", "ER", "Mito"])
    assert got.dtype == np.float32 and got.shape == (2, 4, 5)
    assert got[0, 0, 0] == 20.0 and got[1, 0, 0] == 30.0
    assert truth_fields(folder) == ["A01-0", "B02-1"]


def test_without_truth_json_the_plate_order_is_used(tmp_path: Path) -> None:
    folder = _truth_folder(tmp_path, None)
    got = read_truth(folder, "A01", 0, ["Mito"], plate_channels=["DNA", "ER", "Mito"])
    assert got[0, 0, 0] == 30.0
    assert camera_noise_models(folder) == {}


def test_missing_field_or_channel_is_named(tmp_path: Path) -> None:
    folder = _truth_folder(tmp_path, ["DNA", "ER", "Mito"])
    with pytest.raises(TruthError, match="A02-0.npy"):
        read_truth(folder, "A02", 0, ["DNA"])
    with pytest.raises(TruthError, match="AGP"):
        read_truth(folder, "A01", 0, ["AGP"])


def test_camera_noise_models_give_the_variance_line(tmp_path: Path) -> None:
    folder = _truth_folder(tmp_path, ["DNA", "ER", "Mito"])
    dna = camera_noise_models(folder)["DNA"]
    # var = 0.2 * (y - 300) + 81
    assert float(dna.variance(np.array([1300.0]))[0]) == pytest.approx(0.2 * 1000 + 81)
    assert dna.correlation == 0.0  # a truth.json without a correlation: white noise


def test_camera_noise_models_keep_the_noise_correlation(tmp_path: Path) -> None:
    folder = _truth_folder(tmp_path, ["DNA"])
    meta = json.loads((folder / "truth.json").read_text())
    meta["noise_model"]["DNA"]["correlation"] = 0.49
    (folder / "truth.json").write_text(json.dumps(meta))
    assert camera_noise_models(folder)["DNA"].correlation == 0.49


def test_explicit_truth_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(TruthError, match="predict.truth"):
        find_truth_dir(tmp_path / "nowhere.zarr", tmp_path / "missing")
    folder = _truth_folder(tmp_path, None)
    assert find_truth_dir(tmp_path / "nowhere.zarr", folder) == folder
