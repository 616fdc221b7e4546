"""Training from in-memory arrays (BSD-style data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jumpdenoise.errors import ConfigError
from jumpdenoise.train.arrays import as_cyx_list, train_on_arrays
from jumpdenoise.train.run_folder import read_curves
from fixtures.plates import correlated_noise, noisy_field

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


def test_arrays_run_is_estimated_and_loads_calibrated(tmp_path: Path) -> None:
    """Training on arrays writes quality.json (known Gaussian noise given) and the model loads with its offset."""
    from jumpdenoise.predict.model import load_model
    from jumpdenoise.quality.gain import QUALITY_JSON, read_quality
    from jumpdenoise.quality.noise import NoiseVariance

    imgs = [noisy_field(1, 96, seed=s)[0] for s in range(3)]
    known = {"c0": NoiseVariance(a=0.0, b=400.0, n_pixels=0)}
    run = train_on_arrays(imgs[:2], tmp_path / "run", val_images=imgs[2:], epochs=1, patch_size=32, batch_size=8,
                          noise_models=known, **TINY)
    record = read_quality(run)
    best = json.loads((run / "best.json").read_text())["best"]
    assert record["fields"] == ["val-image-0"] and record["checkpoint"] == best
    entry = record["channels"]["c0"]
    assert entry["noise_source"] == "camera" and entry["reliable"] is True
    assert entry["noise_model"]["b"] == 400.0 and np.isfinite(entry["gain_db"])
    loaded = load_model(run, "cpu")
    assert loaded.output_offset is not None
    np.testing.assert_allclose(loaded.output_offset, [entry["output_offset"]], rtol=1e-6)
    stamp = (run / QUALITY_JSON).stat().st_mtime_ns
    train_on_arrays(imgs[:2], run, val_images=imgs[2:], epochs=1, patch_size=32, batch_size=8, **TINY)
    assert (run / QUALITY_JSON).stat().st_mtime_ns == stamp  # a finished run is not measured again

    unmeasured = train_on_arrays(imgs[:2], tmp_path / "bare", val_images=imgs[2:], epochs=1, patch_size=32,
                                 batch_size=8, estimate=False, **TINY)
    assert read_quality(unmeasured) is None and load_model(unmeasured, "cpu").output_offset is None

    # blend=False (the BSD protocol): weights of 1, the network's output alone, its offset still removed
    alone = train_on_arrays(imgs[:2], tmp_path / "alone", val_images=imgs[2:], epochs=1, patch_size=32, batch_size=8,
                            noise_models=known, blend=False, **TINY)
    entry = read_quality(alone)["channels"]["c0"]
    assert entry["blend"] == [1.0, 1.0] and np.isfinite(entry["gain_db"])
    network = load_model(alone, "cpu")
    assert network.blend is None and network.output_offset is not None


def _correlated_images(n: int, size: int, seed: int) -> list[np.ndarray]:
    """A bright blob on a flat background, noise averaged over 2 x 2 pixels (neighbour correlation 0.5)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        noise = correlated_noise((size, size), rng, 12.0)
        cy, cx = rng.uniform(size / 4, 3 * size / 4, 2)
        scene = 400 + 300 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 14.0 ** 2))
        out.append((scene + noise)[None].astype(np.float32))
    return out


def test_correlated_noise_trains_and_predicts_on_phase_sub_images(tmp_path: Path) -> None:
    import dataclasses

    from jumpdenoise.compute.phases import merge_phases, split_phases
    from jumpdenoise.errors import ModelError
    from jumpdenoise.predict.arrays import denoise_array
    from jumpdenoise.predict.model import load_model
    from jumpdenoise.quality.gain import read_quality
    from jumpdenoise.train.export import export_run

    imgs = _correlated_images(3, 128, seed=5)
    run = train_on_arrays(imgs[:2], tmp_path / "run", val_images=imgs[2:], channels=["DNA"], epochs=1,
                          patch_size=32, batch_size=8, **TINY)
    record = json.loads((run / "noise_correlation.json").read_text())
    assert record["phase_split"] == 2 and record["setting"] == "auto"
    assert record["channels"]["DNA"]["correlated"] and 0.4 < record["channels"]["DNA"]["rho1"] < 0.6
    quality = read_quality(run)
    assert quality["phase_split"] == 2 and quality["n_fields"] == 1
    loaded = load_model(run, "cpu")
    assert loaded.phase_split == 2 and loaded.blend is not None and loaded.provenance()["phase_split"] == 2
    got = denoise_array(loaded, imgs[2], tile_size=None)
    whole = dataclasses.replace(loaded, phase_split=1)  # the same network (offset, blend) on each sub-image
    parts = [denoise_array(whole, np.ascontiguousarray(p), tile_size=None) for p in split_phases(imgs[2], 2)]
    np.testing.assert_allclose(got, merge_phases(parts, 2, np.empty_like(got)), rtol=1e-6, atol=1e-4)
    assert not np.allclose(got, denoise_array(whole, imgs[2], tile_size=None), atol=1e-2)
    with pytest.raises(ModelError, match="phase sub-images"):
        export_run(run)

    plain = train_on_arrays(imgs[:2], tmp_path / "plain", val_images=imgs[2:], epochs=1, patch_size=32,
                            batch_size=8, n2v={"phase_split": 1}, estimate=False, **TINY)
    assert json.loads((plain / "noise_correlation.json").read_text())["phase_split"] == 1
    assert load_model(plain, "cpu").phase_split == 1
    with pytest.raises(ConfigError, match=r"patch_size 64 with phase split 2 .*spans 128 pixels.*<= 48"):
        train_on_arrays(_correlated_images(2, 96, seed=6), tmp_path / "big", patch_size=64, n2v={"phase_split": 2},
                        **TINY)
