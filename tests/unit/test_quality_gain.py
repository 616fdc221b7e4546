"""The gains estimated without truth against the true gains.

The network's own gain: masked blind-spot error minus noise variance. The gain of what predict
writes (the network's output blended with the raw image): Stein's unbiased risk estimate.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from jumpdenoise.io.noise_model import NoiseModel, add_poisson_gaussian_noise
from jumpdenoise.predict.engine import Predictor
from jumpdenoise.predict.model import LoadedModel
from jumpdenoise.quality.blend import low_pass
from jumpdenoise.quality.gain import estimate_gain
from jumpdenoise.quality.noise import NoiseVariance, fit_poisson_gaussian

CAMERA = NoiseModel(gain=2.0, offset=100.0, read_noise=6.0)


def _truth(seed: int, shape: tuple[int, int] = (128, 128)) -> np.ndarray:
    """Smooth low-light signal: blobs 100..~400 ADU above the offset."""
    rng = np.random.default_rng(seed)
    spots = np.zeros(shape)
    spots[rng.integers(0, shape[0], 40), rng.integers(0, shape[1], 40)] = rng.uniform(2e4, 6e4, 40)
    return (CAMERA.offset + 100 + gaussian_filter(spots, 6)).astype(np.float32)


def _blind_blur_model(n_channels: int, sigma: float, mean: np.ndarray, std: np.ndarray,
                      centre: float = 0.0) -> LoadedModel:
    """A Gaussian-blur denoiser whose centre weight is ``centre`` (0: a real blind-spot network)."""
    r = 4
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    kernel = np.exp(-(yy ** 2 + xx ** 2) / (2 * sigma ** 2))
    kernel[r, r] = 0
    kernel *= (1 - centre) / kernel.sum()
    kernel[r, r] = centre
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
    true_gain = [_true_gain(predictor, raws, truths, c) for c in range(2)]
    return {"raws": raws, "truths": truths, "model": model, "true_gain": true_gain}


def _blend(den: np.ndarray, raw: np.ndarray, weights: tuple[float, float]) -> np.ndarray:
    """What predict writes for ``weights`` (low, high band), computed on the host."""
    diff = den.astype(np.float64) - raw
    low = low_pass(diff)
    return raw + weights[0] * low + weights[1] * (diff - low)


def _true_gain(predictor: Predictor, raws: list, truths: list, c: int,
               weights: tuple[float, float] = (1.0, 1.0)) -> float:
    """Gain over the raw images of the blend with ``weights`` against the truth."""
    mse_raw = np.mean([np.mean((r[c] - t[c]) ** 2) for r, t in zip(raws, truths)])
    mse = np.mean([np.mean((_blend(predictor.denoise(r)[c], r[c], weights) - t[c]) ** 2)
                   for r, t in zip(raws, truths)])
    return float(10 * np.log10(mse_raw / mse))


def _best_gain(predictor: Predictor, raws: list, truths: list, c: int) -> float:
    """The gain of the best blend weights on a grid of [0, 1]^2, knowing the truth."""
    grid = np.linspace(0, 1, 11)
    return max(_true_gain(predictor, raws, truths, c, (lo, hi)) for lo in grid for hi in grid)


def test_estimated_gain_is_within_1db_of_the_true_gain_with_the_camera_model(case: dict) -> None:
    camera = NoiseVariance(a=CAMERA.gain, b=CAMERA.read_noise ** 2 - CAMERA.gain * CAMERA.offset, n_pixels=0)
    est = estimate_gain(case["model"], case["raws"], ["DNA", "ER"], noise_models={"DNA": camera, "ER": camera})
    predictor = Predictor(case["model"], tile_size=None)
    for c, ch in enumerate(["DNA", "ER"]):
        assert case["true_gain"][c] > 3  # the blur does denoise these smooth images
        assert est[ch]["network_gain_db"] == pytest.approx(case["true_gain"][c], abs=1.0)
        assert est[ch]["noise_source"] == "camera" and est[ch]["n_pixels"] >= 3 * 21 * 21
        assert est[ch]["network_gain_db_low"] <= est[ch]["network_gain_db"] <= est[ch]["network_gain_db_high"]
        # the blend: within 0.3 dB of the best the truth allows, its gain estimated within 1 dB
        weights = tuple(est[ch]["blend"])
        blended = _true_gain(predictor, case["raws"], case["truths"], c, weights)
        assert blended >= case["true_gain"][c] - 0.05
        assert blended >= _best_gain(predictor, case["raws"], case["truths"], c) - 0.3
        assert est[ch]["gain_db"] == pytest.approx(blended, abs=1.0)
        assert est[ch]["gain_db_low"] <= est[ch]["gain_db"] <= est[ch]["gain_db_high"]


def test_a_network_that_passes_its_pixel_through_gets_an_honest_blend(case: dict) -> None:
    """A blur keeping 40 % of its own pixel is no blind-spot network: the masked estimate misjudges it,
    the unmasked risk estimate (SURE) still gives the blend's true gain within 1 dB."""
    camera = NoiseVariance(a=CAMERA.gain, b=CAMERA.read_noise ** 2 - CAMERA.gain * CAMERA.offset, n_pixels=0)
    leaky = _blind_blur_model(2, 2.0, case["model"].mean, case["model"].std, centre=0.4)
    predictor = Predictor(leaky, tile_size=None)
    est = estimate_gain(leaky, case["raws"], ["DNA", "ER"], noise_models={"DNA": camera, "ER": camera})
    for c, ch in enumerate(["DNA", "ER"]):
        true = _true_gain(predictor, case["raws"], case["truths"], c, tuple(est[ch]["blend"]))
        assert true >= _best_gain(predictor, case["raws"], case["truths"], c) - 0.3
        assert est[ch]["gain_db"] == pytest.approx(true, abs=1.0)
        assert est[ch]["pass_through_variance"] == pytest.approx(0.4 * est[ch]["noise_variance"], rel=0.15)


def test_estimated_gain_is_within_1db_with_the_fitted_noise(case: dict) -> None:
    est = estimate_gain(case["model"], case["raws"], ["DNA", "ER"])
    for c, ch in enumerate(["DNA", "ER"]):
        assert est[ch]["noise_source"] == "fit" and est[ch]["reliable"]  # white noise: scale ratio about 1
        assert 0.8 < est[ch]["noise_model"]["scale_ratio"] < 1.2
        assert est[ch]["network_gain_db"] == pytest.approx(case["true_gain"][c], abs=1.0)


def test_noise_fit_recovers_the_camera_line_on_smooth_images(case: dict) -> None:
    fit = fit_poisson_gaussian([r[0] for r in case["raws"]])
    true_var = np.mean([np.mean((r[0] - t[0]) ** 2) for r, t in zip(case["raws"], case["truths"])])
    fitted_var = np.mean([fit.variance(r[0]).mean() for r in case["raws"]])
    assert fitted_var == pytest.approx(true_var, rel=0.05)
    assert fit.a == pytest.approx(CAMERA.gain, rel=0.2)


def test_identity_network_has_no_blind_spot_and_no_gain(case: dict) -> None:
    """A network that copies its input: negative gain at masked pixels, blend weight 0, nothing gained."""
    ident = LoadedModel(module=torch.nn.Identity(), channels=None, mean=case["model"].mean,
                        std=case["model"].std, careamics_config={}, source=None)
    est = estimate_gain(ident, case["raws"], ["DNA", "ER"])
    for ch in ("DNA", "ER"):
        assert est[ch]["network_gain_db"] < 0
        assert est[ch]["blend"] == [0.0, 0.0] and est[ch]["gain_db"] == 0.0
        # it passes all of its pixel's noise through
        assert est[ch]["pass_through_variance"] == pytest.approx(est[ch]["noise_variance"], rel=0.05)


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

    from jumpdenoise.quality.gain import read_gain
    from jumpdenoise.quality.guard import HarmfulModelError, check_gain_before_predict, warn_worse_channels

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
    from jumpdenoise.quality.guard import check_gain_before_predict

    cfg = load_config(overrides={"paths": {"workdir": str(tmp_path), "run_dir": str(tmp_path / "absent")}})
    assert check_gain_before_predict(cfg) is None
