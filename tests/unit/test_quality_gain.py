"""The gain estimated without truth (masked blind-spot error minus noise variance) against the true gain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from jumpdenoise.io.noise_model import NoiseModel, add_poisson_gaussian_noise
from jumpdenoise.predict.engine import Predictor
from jumpdenoise.predict.model import LoadedModel
from jumpdenoise.quality.gain import estimate_gain
from jumpdenoise.quality.noise import NoiseVariance, fit_poisson_gaussian

CAMERA = NoiseModel(gain=2.0, offset=100.0, read_noise=6.0)


def _truth(seed: int, shape: tuple[int, int] = (128, 128)) -> np.ndarray:
    """Smooth low-light signal: blobs 100..~400 ADU above the offset."""
    rng = np.random.default_rng(seed)
    spots = np.zeros(shape)
    spots[rng.integers(0, shape[0], 40), rng.integers(0, shape[1], 40)] = rng.uniform(2e4, 6e4, 40)
    return (CAMERA.offset + 100 + gaussian_filter(spots, 6)).astype(np.float32)


def _blind_blur_model(n_channels: int, sigma: float, mean: np.ndarray, std: np.ndarray) -> LoadedModel:
    """A real blind-spot denoiser: a Gaussian blur whose centre weight is 0 (output never sees its pixel)."""
    r = 4
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    kernel = np.exp(-(yy ** 2 + xx ** 2) / (2 * sigma ** 2))
    kernel[r, r] = 0
    kernel /= kernel.sum()
    conv = torch.nn.Conv2d(n_channels, n_channels, 2 * r + 1, padding=r, padding_mode="reflect", groups=n_channels,
                           bias=False)
    with torch.no_grad():
        conv.weight[:] = torch.tensor(kernel, dtype=torch.float32)
    return LoadedModel(module=conv.eval(), channels=None, mean=mean, std=std, careamics_config={}, source=None)


@pytest.fixture(scope="module")
def case() -> dict:
    rng = np.random.default_rng(7)
    truths = [np.stack([_truth(10 * i + c) for c in range(2)]) for i in range(3)]
    raws = [add_poisson_gaussian_noise(t, CAMERA, rng) for t in truths]
    mean = np.array([np.mean([r[c].mean() for r in raws]) for c in range(2)])
    std = np.array([np.mean([r[c].std() for r in raws]) for c in range(2)])
    model = _blind_blur_model(2, 2.0, mean, std)
    predictor = Predictor(model, tile_size=None)
    true_gain = []
    for c in range(2):
        mse_raw = np.mean([np.mean((r[c] - t[c]) ** 2) for r, t in zip(raws, truths)])
        mse_den = np.mean([np.mean((predictor.denoise(r)[c] - t[c]) ** 2) for r, t in zip(raws, truths)])
        true_gain.append(10 * np.log10(mse_raw / mse_den))
    return {"raws": raws, "truths": truths, "model": model, "true_gain": true_gain}


def test_estimated_gain_is_within_1db_of_the_true_gain_with_the_camera_model(case: dict) -> None:
    camera = NoiseVariance(a=CAMERA.gain, b=CAMERA.read_noise ** 2 - CAMERA.gain * CAMERA.offset, n_pixels=0)
    est = estimate_gain(case["model"], case["raws"], ["DNA", "ER"], noise_models={"DNA": camera, "ER": camera})
    for c, ch in enumerate(["DNA", "ER"]):
        assert case["true_gain"][c] > 3  # the blur does denoise these smooth images
        assert est[ch]["gain_db"] == pytest.approx(case["true_gain"][c], abs=1.0)
        assert est[ch]["noise_source"] == "camera" and est[ch]["n_pixels"] >= 3 * 21 * 21
        assert est[ch]["gain_db_low"] <= est[ch]["gain_db"] <= est[ch]["gain_db_high"]


def test_estimated_gain_is_within_1db_with_the_fitted_noise(case: dict) -> None:
    est = estimate_gain(case["model"], case["raws"], ["DNA", "ER"])
    for c, ch in enumerate(["DNA", "ER"]):
        assert est[ch]["noise_source"] == "fit" and est[ch]["reliable"]  # white noise: scale ratio about 1
        assert 0.8 < est[ch]["noise_model"]["scale_ratio"] < 1.2
        assert est[ch]["gain_db"] == pytest.approx(case["true_gain"][c], abs=1.0)


def test_noise_fit_recovers_the_camera_line_on_smooth_images(case: dict) -> None:
    fit = fit_poisson_gaussian([r[0] for r in case["raws"]])
    true_var = np.mean([np.mean((r[0] - t[0]) ** 2) for r, t in zip(case["raws"], case["truths"])])
    fitted_var = np.mean([fit.variance(r[0]).mean() for r in case["raws"]])
    assert fitted_var == pytest.approx(true_var, rel=0.05)
    assert fit.a == pytest.approx(CAMERA.gain, rel=0.2)


def test_identity_network_has_no_blind_spot_and_a_negative_gain(case: dict) -> None:
    """A network that copies its input predicts the replaced neighbour at masked pixels: gain < 0."""
    ident = LoadedModel(module=torch.nn.Identity(), channels=None, mean=case["model"].mean,
                        std=case["model"].std, careamics_config={}, source=None)
    est = estimate_gain(ident, case["raws"], ["DNA", "ER"])
    assert all(est[ch]["gain_db"] < 0 for ch in ("DNA", "ER"))


def test_spatially_correlated_noise_is_flagged_unreliable() -> None:
    """Noise blurred over ~2 pixels hides from the 1-pixel high-pass: the fit says it cannot be trusted."""
    rng = np.random.default_rng(3)
    truth = _truth(5, (192, 192))
    raws = [truth + gaussian_filter(rng.normal(0, 40, truth.shape), 1.0) for _ in range(2)]
    fit = fit_poisson_gaussian(raws)
    assert fit.scale_ratio is not None and fit.scale_ratio > 1.5
    mean, std = np.array([truth.mean()]), np.array([truth.std()])
    est = estimate_gain(_blind_blur_model(1, 1.0, mean, std), [r[None] for r in raws], ["DNA"])
    assert est["DNA"]["reliable"] is False


def _run_with_quality(tmp_path, channels: dict) -> object:
    import json

    from jumpdenoise.config import load_config

    run = tmp_path / "model"
    run.mkdir()
    (run / "normalization.json").write_text(json.dumps({"channels": list(channels), "mean": [0.0], "std": [1.0]}))
    (run / "quality.json").write_text(json.dumps({"version": 1, "channels": channels}))
    return load_config(overrides={"paths": {"workdir": str(tmp_path), "run_dir": str(run)}})


def test_guard_acts_on_reliable_estimates_only(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from jumpdenoise.quality.gain import HarmfulModelError, check_gain_before_predict, read_gain, warn_worse_channels

    cfg = _run_with_quality(tmp_path, {"DNA": {"gain_db": -1.5, "reliable": True},
                                       "ER": {"gain_db": -4.0, "reliable": False},
                                       "Mito": {"gain_db": 3.0, "reliable": True}})
    assert read_gain(cfg.paths.run_dir) == {"DNA": -1.5, "ER": -4.0, "Mito": 3.0}
    with pytest.raises(HarmfulModelError) as err:
        check_gain_before_predict(cfg)
    assert "DNA (-1.5 dB)" in str(err.value) and "ER" not in str(err.value) and "train longer" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="jumpdenoise.predict"):
        assert warn_worse_channels(cfg.paths.run_dir, ["DNA", "ER", "Mito"]) == {"DNA": -1.5}
    assert any("ER (-4.0 dB)" in r.getMessage() and "not guarded" in r.getMessage() for r in caplog.records)
    allowed = cfg.model_copy(update={"predict": cfg.predict.model_copy(update={"allow_worse": True})})
    assert check_gain_before_predict(allowed) is None


def test_guard_passes_without_quality_json(tmp_path) -> None:
    from jumpdenoise.config import load_config
    from jumpdenoise.quality.gain import check_gain_before_predict

    cfg = load_config(overrides={"paths": {"workdir": str(tmp_path), "run_dir": str(tmp_path / "absent")}})
    assert check_gain_before_predict(cfg) is None
