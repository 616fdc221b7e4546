"""Image quality against a ground truth: PSNR, SSIM and the mean-intensity bias of one 2-D plane.

All scores compare an image (raw or denoised) with the truth it estimates, both as float64.

Display range rule
------------------
PSNR and SSIM need the range of values a plane can take (``data_range``). Fluorescence
images have no fixed range and a few saturated or hot pixels, so the default is the
truth's robust range, ``p99.9 - p0.1`` of the truth plane (:func:`default_data_range`).
The same range is used for the raw and the denoised plane, so their PSNRs differ exactly by
the ratio of their mean squared errors: ``psnr(denoised) - psnr(raw) = 10 log10(MSE_raw /
MSE_denoised)``, which does not depend on the range chosen.
"""

from __future__ import annotations

import numpy as np

__all__ = ["default_data_range", "mean_bias_pct", "mse", "psnr", "score", "ssim"]

RANGE_PERCENTILES = (0.1, 99.9)


def _pair(image: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, t = np.asarray(image, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if a.shape != t.shape:
        raise ValueError(f"image {a.shape} and truth {t.shape} differ in shape")
    return a, t


def default_data_range(truth: np.ndarray) -> float:
    """The truth's robust range, ``p99.9 - p0.1`` (1.0 when the truth is flat)."""
    lo, hi = np.percentile(np.asarray(truth, dtype=np.float64), RANGE_PERCENTILES)
    span = float(hi - lo)
    return span if span > 0 else 1.0


def mse(image: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared error of ``image`` against ``truth``."""
    a, t = _pair(image, truth)
    return float(np.mean((a - t) ** 2))


def psnr(image: np.ndarray, truth: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)`` (``inf`` when equal).

    Parameters
    ----------
    image, truth
        2-D planes of the same shape.
    data_range
        The range of values (see :func:`default_data_range`).
    """
    err = mse(image, truth)
    if err == 0:
        return float("inf")
    return float(10.0 * np.log10(float(data_range) ** 2 / err))


def ssim(image: np.ndarray, truth: np.ndarray, data_range: float) -> float:
    """Structural similarity (scikit-image, 7x7 uniform window, defaults) of ``image`` to ``truth``."""
    from skimage.metrics import structural_similarity

    a, t = _pair(image, truth)
    return float(structural_similarity(t, a, data_range=float(data_range)))


def mean_bias_pct(image: np.ndarray, truth: np.ndarray) -> float:
    """Mean-intensity bias in percent: ``100 (mean(image) - mean(truth)) / |mean(truth)|``.

    ``nan`` when the truth's mean is 0.
    """
    a, t = _pair(image, truth)
    true_mean = float(t.mean())
    if true_mean == 0:
        return float("nan")
    return 100.0 * (float(a.mean()) - true_mean) / abs(true_mean)


def score(image: np.ndarray, truth: np.ndarray, *, data_range: float | None = None) -> dict[str, float]:
    """PSNR, SSIM and mean bias of one 2-D plane against its truth.

    Parameters
    ----------
    image, truth
        2-D planes of the same shape (any real dtype).
    data_range
        Range for PSNR and SSIM; default :func:`default_data_range` of ``truth``
        (``p99.9 - p0.1``).

    Returns
    -------
    dict
        ``{"psnr": dB, "ssim": ..., "bias_pct": %}``.
    """
    a, t = _pair(image, truth)
    if a.ndim != 2:
        raise ValueError(f"score takes 2-D planes, got shape {a.shape}")
    rng = default_data_range(t) if data_range is None else float(data_range)
    return {"psnr": psnr(a, t, rng), "ssim": ssim(a, t, rng), "bias_pct": mean_bias_pct(a, t)}
