"""The blend of the network's output with the raw image: weights read per checkpoint, applied per channel."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from jumpdenoise.predict.engine import Predictor
from jumpdenoise.predict.model import LoadedModel
from jumpdenoise.quality.blend import SureTerms, blend_weights


def _quality(run: Path, checkpoint: str, weights: dict[str, float]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "quality.json").write_text(json.dumps(
        {"version": 2, "checkpoint": checkpoint, "channels": {ch: {"blend_weight": w} for ch, w in weights.items()}}))


def test_weights_follow_the_model_channel_order_for_the_checkpoint_measured(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _quality(run, "checkpoints/best.ckpt", {"DNA": 0.8, "ER": 0.4})
    got = blend_weights(run, run / "checkpoints" / "best.ckpt", ["ER", "DNA"])
    assert got.dtype == np.float32 and got.tolist() == pytest.approx([0.4, 0.8])


def test_no_weights_for_another_checkpoint_a_missing_channel_or_no_quality_json(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    assert blend_weights(run, run / "checkpoints" / "best.ckpt", ["DNA"]) is None  # no quality.json
    _quality(run, "checkpoints/best.ckpt", {"DNA": 0.8})
    with caplog.at_level(logging.WARNING):
        assert blend_weights(run, run / "checkpoints" / "last.ckpt", ["DNA"]) is None
    assert any("last.ckpt" in r.getMessage() and "network's output alone" in r.getMessage() for r in caplog.records)
    assert blend_weights(run, run / "checkpoints" / "best.ckpt", ["DNA", "Mito"]) is None
    assert blend_weights(None, run / "checkpoints" / "best.ckpt", ["DNA"]) is None


def test_predictor_writes_the_weighted_sum_of_network_output_and_raw_image() -> None:
    conv = torch.nn.Conv2d(2, 2, 3, padding=1, groups=2, bias=False)
    with torch.no_grad():
        conv.weight[:] = 1.0 / 9
    mean, std = np.array([100.0, 50.0]), np.array([10.0, 5.0])
    raw = np.random.default_rng(0).normal(100, 10, (2, 32, 32)).astype(np.float32)
    raw[1] = raw[1] / 2
    plain = Predictor(LoadedModel(module=conv.eval(), channels=["A", "B"], mean=mean, std=std,
                                  careamics_config={}, source=None), tile_size=None).denoise(raw)
    blended_model = LoadedModel(module=conv.eval(), channels=["A", "B"], mean=mean, std=std, careamics_config={},
                                source=None, blend=np.array([0.25, 1.0], np.float32))
    predictor = Predictor(blended_model, tile_size=None)
    blended = predictor.denoise(raw)
    np.testing.assert_allclose(blended[0], 0.25 * plain[0] + 0.75 * raw[0], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(blended[1], plain[1], rtol=1e-6)
    assert predictor.settings()["blend"] == [0.25, 1.0]


def test_sure_risk_of_a_known_linear_estimate_matches_its_true_error() -> None:
    """f = 0.5 y + 0.5 m for y = x + n: SURE's risk of every blend equals the true error within sampling."""
    rng = np.random.default_rng(1)
    x = rng.uniform(50, 150, 200_000)
    sigma2 = 25.0
    y = x + rng.normal(0, 5, x.size)
    f = 0.5 * y + 0.5 * 100.0
    terms = SureTerms()
    terms.add(f - y, np.full(x.size, sigma2), np.full(x.size, 0.5))  # df/dy = 0.5 exactly
    for alpha in (0.0, 0.3, 1.0):
        risk, se = terms.risk(alpha)
        true = np.mean((alpha * f + (1 - alpha) * y - x) ** 2)
        assert risk == pytest.approx(true, abs=4 * se + 0.4)  # sampling error of the true mean: about 0.08
    best = min(np.linspace(0, 1, 101), key=lambda a: np.mean((a * f + (1 - a) * y - x) ** 2))
    assert terms.weight() == pytest.approx(best, abs=0.02)
