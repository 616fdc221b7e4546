"""The blend of the network's output with the raw image: weights read per checkpoint, applied per channel
and band, chosen by SURE."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from jumpdenoise.predict.engine import Predictor
from jumpdenoise.predict.model import LoadedModel
from jumpdenoise.quality.blend import SureTerms, apply_blend, low_pass, low_pass_kernel_tensor
from jumpdenoise.quality.calibration import blend_weights


def _quality(run: Path, checkpoint: str, weights: dict[str, list[float]]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "quality.json").write_text(json.dumps(
        {"version": 2, "checkpoint": checkpoint, "channels": {ch: {"blend": w} for ch, w in weights.items()}}))


def test_weights_follow_the_model_channel_order_for_the_checkpoint_measured(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _quality(run, "checkpoints/best.ckpt", {"DNA": [0.1, 0.8], "ER": [0.0, 0.4]})
    got = blend_weights(run, run / "checkpoints" / "best.ckpt", ["ER", "DNA"])
    assert got.dtype == np.float32 and got.tolist() == [pytest.approx([0.0, 0.4]), pytest.approx([0.1, 0.8])]


def test_no_weights_for_another_checkpoint_a_missing_channel_or_no_quality_json(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    assert blend_weights(run, run / "checkpoints" / "best.ckpt", ["DNA"]) is None  # no quality.json
    _quality(run, "checkpoints/best.ckpt", {"DNA": [0.2, 0.8]})
    with caplog.at_level(logging.WARNING):
        assert blend_weights(run, run / "checkpoints" / "last.ckpt", ["DNA"]) is None
    assert any("last.ckpt" in r.getMessage() and "network's output alone" in r.getMessage() for r in caplog.records)
    assert blend_weights(run, run / "checkpoints" / "best.ckpt", ["DNA", "Mito"]) is None
    assert blend_weights(None, run / "checkpoints" / "best.ckpt", ["DNA"]) is None


def test_device_blend_matches_the_host_bands() -> None:
    rng = np.random.default_rng(3)
    den, raw = rng.normal(0, 1, (2, 40, 48)).astype(np.float32), rng.normal(0, 1, (2, 40, 48)).astype(np.float32)
    weights = np.array([[0.2, 0.9], [1.0, 0.5]], np.float32)
    got = apply_blend(torch.from_numpy(den.copy()), torch.from_numpy(raw), torch.from_numpy(weights),
                      low_pass_kernel_tensor("cpu")).numpy()
    for c in range(2):
        diff = den[c].astype(np.float64) - raw[c]
        low = low_pass(diff)
        np.testing.assert_allclose(got[c], raw[c] + weights[c, 0] * low + weights[c, 1] * (diff - low), atol=1e-5)


def test_predictor_writes_the_blend_of_network_output_and_raw_image() -> None:
    conv = torch.nn.Conv2d(2, 2, 3, padding=1, groups=2, bias=False)
    with torch.no_grad():
        conv.weight[:] = 1.0 / 9
    mean, std = np.array([100.0, 50.0]), np.array([10.0, 5.0])
    raw = np.random.default_rng(0).normal(100, 10, (2, 32, 32)).astype(np.float32)
    raw[1] = raw[1] / 2
    plain = Predictor(LoadedModel(module=conv.eval(), channels=["A", "B"], mean=mean, std=std,
                                  careamics_config={}, source=None), tile_size=None).denoise(raw)
    weights = np.array([[0.25, 0.25], [1.0, 1.0]], np.float32)  # equal bands: a plain weighted sum
    blended_model = LoadedModel(module=conv.eval(), channels=["A", "B"], mean=mean, std=std, careamics_config={},
                                source=None, blend=weights)
    predictor = Predictor(blended_model, tile_size=None)
    blended = predictor.denoise(raw)
    np.testing.assert_allclose(blended[0], 0.25 * plain[0] + 0.75 * raw[0], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(blended[1], plain[1], rtol=1e-5, atol=1e-3)
    assert predictor.settings()["blend"] == [[0.25, 0.25], [1.0, 1.0]]


def test_sure_weights_and_risk_match_the_truth_for_a_smooth_error() -> None:
    """A denoiser whose error is smooth (an offset per region) and independent of the noise: the best
    blend keeps the raw image's low band and the network's high band; SURE finds it without the truth."""
    rng = np.random.default_rng(1)
    terms = SureTerms()
    fields = []
    for _ in range(4):
        x = low_pass(rng.uniform(50, 150, (128, 128)))
        n = rng.normal(0, 5, x.shape)
        y = x + n
        err = 6 * low_pass(low_pass(rng.normal(0, 1, x.shape))) / 0.16  # smooth, about 6 ADU
        f = x + err
        signs = rng.choice([-1.0, 1.0], x.shape)
        terms.add(f - y, np.full(x.shape, 25.0), np.zeros(x.shape), signs, 0.5)  # f does not depend on y
        fields.append((x, y, f))

    def true_risk(lo: float, hi: float) -> float:
        return float(np.mean([np.mean((y + lo * low_pass(f - y) + hi * (f - y - low_pass(f - y)) - x) ** 2)
                              for x, y, f in fields]))

    lo, hi = terms.weights()
    assert lo < 0.3 and hi > 0.8
    grid = np.linspace(0, 1, 21)
    best = min(true_risk(a, b) for a in grid for b in grid)
    assert true_risk(lo, hi) <= best * 1.05
    for weights in ((0.0, 0.0), (lo, hi), (1.0, 1.0)):
        risk, se = terms.risk(*weights)
        assert risk == pytest.approx(true_risk(*weights), abs=4 * se + 0.03 * true_risk(*weights))


def test_sure_on_correlated_noise_needs_a_probe_with_the_noises_correlation() -> None:
    """A denoiser averaging neighbours also averages the noise they share with the pixel: with a white
    probe SURE underestimates its risk; a probe filtered to the noise's correlation recovers the truth."""
    from scipy.ndimage import uniform_filter

    from jumpdenoise.io.noise_model import filter_to_correlation

    rho, sigma, eps = 0.5, 5.0, 0.5
    rng = np.random.default_rng(2)

    def correlated(shape: tuple[int, int]) -> np.ndarray:
        return filter_to_correlation(rng.choice([-1.0, 1.0], shape), rho, mode="wrap").astype(np.float64)

    white, matched, truth = SureTerms(), SureTerms(), []
    for _ in range(4):
        x = low_pass(low_pass(rng.uniform(50, 150, (128, 128))))
        y = x + sigma * correlated(x.shape)
        f = uniform_filter(y, 3, mode="wrap")  # linear: f(y + eps v) - f(y) = f(eps v)
        signs = rng.choice([-1.0, 1.0], x.shape)
        white.add(f - y, np.full(x.shape, sigma**2), uniform_filter(eps * signs, 3, mode="wrap"), signs, eps)
        probe = correlated(x.shape)
        matched.add(f - y, np.full(x.shape, sigma**2), uniform_filter(eps * probe, 3, mode="wrap"), probe, eps,
                    correlation=rho)
        truth.append((x, y, f))

    def true_risk(lo: float, hi: float) -> float:
        return float(np.mean([np.mean((y + lo * low_pass(f - y) + hi * (f - y - low_pass(f - y)) - x) ** 2)
                              for x, y, f in truth]))

    for weights in ((1.0, 1.0), (0.5, 0.8), (0.0, 0.6)):
        assert matched.risk(*weights)[0] == pytest.approx(true_risk(*weights), rel=0.05), weights
    assert white.risk(1.0, 1.0)[0] < 0.8 * true_risk(1.0, 1.0)
