"""Training from in-memory arrays (BSD-style data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jumpdenoise.errors import ConfigError
from jumpdenoise.train.arrays import as_cyx_list, train_on_arrays
from jumpdenoise.train.run_folder import read_curves
from fixtures.plates import noisy_field

TINY = {"patches_per_epoch": 64, "n_val_patches": 16, "model": {"depth": 2, "num_channels_init": 8},
        "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}}


def test_train_on_one_grayscale_image(tmp_path: Path) -> None:
    noisy, _ = noisy_field(1, 96, seed=3)
    img = noisy[0].astype(np.uint8)  # YX, uint8 like BSD68
    run = train_on_arrays(img, tmp_path / "run", epochs=2, patch_size=32, batch_size=8, seed=2, **TINY)
    assert run == tmp_path / "run"
    split = json.loads((run / "split.json").read_text())
    assert split["mode"] == "region" and split["val_rows"][1] == 96
    norm = json.loads((run / "normalization.json").read_text())
    train_rows = img[: split["train_rows"][1]]
    assert norm["channels"] == ["c0"] and norm["mean"][0] == pytest.approx(train_rows.mean(), rel=1e-6)
    assert len(read_curves(run)) == 2 and (run / "checkpoints" / "last.ckpt").is_file()
    from jumpdenoise.compat import load_careamics_configuration as load_configuration

    assert load_configuration(run / "careamics_config.yaml").data_config.data_type == "array"


def test_arrays_with_validation_images_and_given_normalisation(tmp_path: Path) -> None:
    imgs = [noisy_field(2, 64, seed=s)[0] for s in range(3)]
    run = train_on_arrays(imgs, tmp_path / "run", val_images=imgs[2:], channels=["DNA", "ER"], epochs=1,
                          patch_size=32, batch_size=8, n2v2=True, mean=[300, 300], std=[50, 50], **TINY)
    norm = json.loads((run / "normalization.json").read_text())
    assert norm == {"channels": ["DNA", "ER"], "mean": [300.0, 300.0], "std": [50.0, 50.0], "source": "given"}
    split = json.loads((run / "split.json").read_text())
    assert split["mode"] == "given" and split["val_fields"] == ["val-image-0"]
    import yaml

    cc = yaml.safe_load((run / "careamics_config.yaml").read_text())
    assert cc["algorithm_config"]["model"]["n2v2"] is True


def test_bad_array_inputs() -> None:
    with pytest.raises(ConfigError, match="shape"):
        as_cyx_list(np.zeros((2, 2, 2, 2, 2)))
    with pytest.raises(ConfigError, match="different channel counts"):
        as_cyx_list([np.zeros((8, 8)), np.zeros((3, 8, 8))])
    with pytest.raises(ConfigError, match="channels: 1 names"):
        train_on_arrays(np.zeros((2, 64, 64)), "unused", channels=["x"])
    with pytest.raises(ConfigError, match=r"train\.patch_size 128 is larger"):
        train_on_arrays(np.zeros((64, 64)), "unused", patch_size=128)
    with pytest.raises(ConfigError, match=r"(?s)train_on_arrays arguments.*bogus"):
        train_on_arrays(np.zeros((64, 64)), "unused", bogus=1)


def test_relative_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run folder given as a relative path (e.g. `--out bsd-run`) works and best.json is relative."""
    monkeypatch.chdir(tmp_path)
    noisy, _ = noisy_field(1, 96, seed=4)
    run = train_on_arrays(noisy[0], "rel-run", epochs=1, patch_size=32, batch_size=8, **TINY)
    best = json.loads((tmp_path / "rel-run" / "best.json").read_text())
    assert not Path(best["best"]).is_absolute()
    assert (tmp_path / "rel-run" / best["best"]).is_file()
    assert Path(run).resolve() == (tmp_path / "rel-run").resolve()
