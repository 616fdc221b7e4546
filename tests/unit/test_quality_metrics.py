"""PSNR, SSIM and mean bias against known values."""

from __future__ import annotations

import numpy as np
import pytest

from jumpdenoise.quality.metrics import default_data_range, mean_bias_pct, psnr, score, ssim


def test_psnr_of_a_constant_offset_is_known() -> None:
    truth = np.linspace(0, 100, 64 * 64).reshape(64, 64)
    # MSE = 2^2 = 4, range 100: 10 log10(10000 / 4) = 33.979 dB
    assert psnr(truth + 2.0, truth, 100.0) == pytest.approx(10 * np.log10(10000 / 4), abs=1e-9)
    assert psnr(truth, truth, 100.0) == float("inf")


def test_mean_bias_pct_of_a_scaled_image() -> None:
    truth = np.full((8, 8), 200.0)
    assert mean_bias_pct(truth * 1.05, truth) == pytest.approx(5.0)
    assert mean_bias_pct(truth - 10, truth) == pytest.approx(-5.0)


def test_ssim_is_one_for_identical_and_lower_with_noise() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1000, (64, 64))
    assert ssim(truth, truth, 1000.0) == pytest.approx(1.0)
    assert ssim(truth + rng.normal(0, 200, truth.shape), truth, 1000.0) < 0.9


def test_score_default_range_is_truth_p01_to_p999() -> None:
    truth = np.arange(10000, dtype=np.float64).reshape(100, 100)
    lo, hi = np.percentile(truth, [0.1, 99.9])
    assert default_data_range(truth) == pytest.approx(hi - lo)
    s = score(truth.astype(np.uint16) + 3, truth)
    assert s["psnr"] == pytest.approx(10 * np.log10((hi - lo) ** 2 / 9))
    assert s["bias_pct"] == pytest.approx(100 * 3 / truth.mean())
    assert set(s) == {"psnr", "ssim", "bias_pct"}


def test_score_refuses_mismatched_or_3d_planes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        score(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="2-D"):
        score(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
