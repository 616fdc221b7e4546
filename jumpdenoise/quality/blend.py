"""The noise-optimal blend of a Noise2Void prediction with its raw input, per channel and band.

A blind-spot network's prediction ``f_i`` of pixel ``i`` is made without seeing the noisy
value ``y_i = x_i + n_i``, so its error ``f_i - x_i`` is independent of the noise ``n_i``.
Both are estimates of the truth ``x_i``: ``f_i`` with error variance ``e^2``, ``y_i`` with the
noise variance ``sigma^2``; their best linear combination (the Gaussian case of the
minimum-mean-square-error estimate that Probabilistic Noise2Void computes per pixel) is
``alpha f + (1 - alpha) y`` with ``alpha = sigma^2 / (sigma^2 + e^2)``, better than both.

The two errors do not have the same spectrum: the raw image's noise is white, while a
network's error is mostly smooth (a slightly wrong brightness over an object), where the
noise is weakest. Predict therefore blends two bands separately, split by a Gaussian low-pass
``G`` (:data:`BAND_SIGMA` pixels):

    b = y + alpha_low G(f - y) + alpha_high (f - y - G(f - y)),

so the written image takes its fine detail mostly from the network and its smooth part mostly
from the raw image, where that is closer to the truth.

The weights are measured on held-out fields without ground truth, on what predict computes
(the network run without masking), with Stein's unbiased risk estimate (SURE; Monte-Carlo
divergence, Ramani, Blu and Unser 2008):

    E|b - x|^2 = mean (b_i - y_i)^2 - S + 2 mean sigma_i^2 db_i/dy_i,

with ``S = mean sigma_i^2`` (the noise model) and ``db_i/dy_i`` estimated with one extra pass
on ``y + eps * v`` (``v`` random signs). When neighbouring pixels share part of their noise
(correlation ``C_ij``), the last term is ``2 mean sigma_i^2 sum_j C_ij db_i/dy_j``: a
denoiser that averages neighbours also averages the noise they share with the pixel. The probe
``v`` is then the random signs filtered to the noise's correlation
(:func:`jumpdenoise.io.noise_model.correlation_taps`), whose ``E[v_i v_j] = C_ij`` turns the
same one-pass estimate into that sum, and the low-pass's own term ``sum_j G_ij C_ij``
(:func:`_centre_weight`). The risk is quadratic in the two weights; they are
chosen in ``[0, 1]^2`` to minimise it (:class:`SureTerms`), and the gain
``10 log10(S / E|b - x|^2)`` is what predict writes gains over the raw image. A network that
copies part of its own pixel (no longer blind to ``n_i``) gets lower weights, one that copies
it all gets 0: predict then writes the raw image.

The weights are stored per channel in the run's ``quality.json`` (``blend``: ``[low, high]``),
for the checkpoint they were measured on;
:func:`jumpdenoise.quality.calibration.blend_weights` returns them for a loaded checkpoint,
:func:`apply_blend` applies them on the device
(:class:`~jumpdenoise.predict.engine.Predictor`) and :func:`low_pass` on the host.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

__all__ = ["BAND_SIGMA", "SureTerms", "apply_blend", "low_pass", "low_pass_kernel", "low_pass_kernel_tensor"]


#: Standard deviation in pixels of the Gaussian splitting the low and the high band.
BAND_SIGMA = 1.0
_RADIUS = 4


def low_pass_kernel(sigma: float = BAND_SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian of the band split (radius 4 sigma, float64)."""
    r = int(np.ceil(_RADIUS * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return k / k.sum()


def low_pass(image: np.ndarray) -> np.ndarray:
    """The low band of a 2-D ``image``: separable Gaussian, mirrored borders (as on the device)."""
    from scipy.ndimage import correlate1d

    k = low_pass_kernel()
    a = np.asarray(image, np.float64)
    return correlate1d(correlate1d(a, k, axis=0, mode="mirror"), k, axis=1, mode="mirror")


def _centre_weight(correlation: float = 0.0) -> float:
    """``sum_j G_ij C_ij``: the 2-D low-pass's weight of the pixel's own noise, ``G_ii`` on white noise.

    ``C`` is the noise's correlation, as :func:`jumpdenoise.io.noise_model.correlation_taps`
    makes it (separable), of neighbour correlation ``correlation``.
    """
    from jumpdenoise.io.noise_model import taps_autocorrelation

    k = low_pass_kernel()
    centre = (k.size - 1) // 2
    r = taps_autocorrelation(correlation)
    along = sum(float(k[centre + d]) * float(r[abs(d)]) for d in range(-2, 3))
    return along * along


def low_pass_kernel_tensor(device: Any) -> Any:
    """:func:`low_pass_kernel` as a float32 tensor on ``device`` (made once per predictor)."""
    import torch

    return torch.as_tensor(low_pass_kernel(), dtype=torch.float32, device=device)


def _low_pass_torch(t: Any, k: Any) -> Any:
    """The low band of ``(c, y, x)`` float32 tensor ``t`` (depthwise separable convolution by ``k``)."""
    import torch.nn.functional as F

    c, r = t.shape[0], (k.numel() - 1) // 2
    x = F.pad(t[None], (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


def apply_blend(y: Any, x: Any, weights: Any, kernel: Any) -> Any:
    """``x + w_low G(y - x) + w_high (y - x - G(y - x))`` per channel, in place in ``y``.

    ``y`` is the network's output and ``x`` its input, ``(c, h, w)`` tensors on one device;
    ``weights`` a ``(c, 2)`` tensor of ``[low, high]`` weights and ``kernel`` the low-pass on
    that device (:func:`low_pass_kernel_tensor`). Fields smaller than the filter are blended
    with the high weight alone.
    """
    y.sub_(x)
    r = (kernel.numel() - 1) // 2
    if min(y.shape[-2:]) > r:
        low = _low_pass_torch(y, kernel)
        y.sub_(low).mul_(weights[:, 1].view(-1, 1, 1)).add_(low.mul_(weights[:, 0].view(-1, 1, 1)))
    else:
        y.mul_(weights[:, 1].view(-1, 1, 1))
    return y.add_(x)


class SureTerms:
    """Running sums of one channel's SURE terms over held-out pixels (no per-pixel storage).

    Per pixel the risk of the blend with weights ``(l, h)`` is ``w . z`` with
    ``z = (u_l^2, u_l u_h, u_h^2, c_l, c_h, s)`` and ``w = (l^2, 2 l h, h^2, -2 l, -2 h, 1)``:
    ``u`` the bands of ``f - y``, ``c_k = sigma^2 (t_k - d_k)`` (``t_k`` the band filter's
    centre weight, ``d_k`` the divergence estimate of the band of ``f``), ``s = sigma^2``.
    """

    def __init__(self) -> None:
        self.n = 0
        self.sum = np.zeros(6)
        self.outer = np.zeros((6, 6))

    def add(self, residual: np.ndarray, variance: np.ndarray, moved: np.ndarray, signs: np.ndarray,
            eps: float, correlation: float = 0.0) -> None:
        """Add one field's pixels.

        Parameters
        ----------
        residual
            ``f(y) - y`` (2-D).
        variance
            The noise variance ``sigma_i^2`` of each pixel.
        moved
            ``f(y + eps * signs) - f(y)``.
        signs
            The probe ``v`` of the extra pass: random signs (+-1), filtered to the noise's
            correlation when it has one.
        eps
            The step of the extra pass.
        correlation
            The noise's neighbour correlation (0: white), as the probe was filtered.
        """
        r = np.asarray(residual, np.float64)
        low_r = low_pass(r)
        dm = np.asarray(moved, np.float64)
        low_dm = low_pass(dm)
        v = np.asarray(signs, np.float64)
        t_low = _centre_weight(correlation)
        s = np.asarray(variance, np.float64)
        d_low, d_high = v * low_dm / eps, v * (dm - low_dm) / eps
        u_l, u_h = low_r, r - low_r
        z = np.stack([u_l * u_l, u_l * u_h, u_h * u_h, s * (t_low - d_low), s * (1.0 - t_low - d_high), s])
        z = z.reshape(6, -1)
        self.sum += z.sum(axis=1)
        self.outer += z @ z.T
        self.n += z.shape[1]

    def mean_noise(self) -> float:
        """``S``: the mean noise variance."""
        return float(self.sum[5] / self.n)

    @staticmethod
    def _w(low: float, high: float) -> np.ndarray:
        return np.array([low * low, 2 * low * high, high * high, -2 * low, -2 * high, 1.0])

    def risk(self, low: float, high: float) -> tuple[float, float]:
        """Estimated mean squared error to the truth of the blend, and its standard error."""
        w = self._w(low, high)
        mean = self.sum / self.n
        cov = self.outer / self.n - np.outer(mean, mean)
        return float(w @ mean), float(max(0.0, w @ cov @ w) / max(1, self.n - 1)) ** 0.5

    def weights(self) -> tuple[float, float]:
        """The risk-minimising ``(low, high)`` weights in ``[0, 1]^2``."""
        m = self.sum / self.n
        if m[0] + m[2] <= 1e-9 * m[5]:  # the output is the input: every weight writes the raw image
            return 0.0, 0.0
        quad = np.array([[m[0], m[1]], [m[1], m[2]]])
        lin = np.array([m[3], m[4]])
        candidates = []
        try:
            candidates.append(np.linalg.solve(quad, lin))
        except np.linalg.LinAlgError:
            pass
        for k, fixed in itertools.product((0, 1), (0.0, 1.0)):  # one weight on an edge of the box
            other = 1 - k
            free = (lin[other] - quad[other, k] * fixed) / quad[other, other] if quad[other, other] > 0 else 0.0
            pair = [0.0, 0.0]
            pair[k], pair[other] = fixed, free
            candidates.append(np.asarray(pair))
        best = min((np.clip(c, 0.0, 1.0) for c in candidates), key=lambda c: self.risk(*c)[0])
        return float(best[0]), float(best[1])

