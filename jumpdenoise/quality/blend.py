"""The noise-optimal blend of a Noise2Void prediction with its raw input, per channel.

A blind-spot network's prediction ``f_i`` of pixel ``i`` is made without seeing the noisy
value ``y_i = x_i + n_i``, so its error ``f_i - x_i`` is independent of the noise ``n_i``.
Both are estimates of the truth ``x_i``: ``f_i`` with error variance ``e^2``, ``y_i`` with the
noise variance ``sigma^2``. Their best linear combination (the Gaussian case of the
minimum-mean-square-error estimate that Probabilistic Noise2Void computes per pixel) is

    b_i = alpha * f_i + (1 - alpha) * y_i,   alpha = sigma^2 / (sigma^2 + e^2),

with error ``sigma^2 * (1 - alpha)``: lower than both the raw image's (``sigma^2``) and the
network's (``e^2``).

At prediction the network sees pixel ``i`` too, and a network that learned to copy part of
it is no longer blind to ``n_i``. The weight and the gain are therefore measured on what
predict computes, with Stein's unbiased risk estimate (SURE; Monte-Carlo divergence, Ramani,
Blu and Unser 2008), which needs no ground truth: for ``b = alpha * f(y) + (1 - alpha) * y``,

    E|b - x|^2 = alpha^2 L - 2 alpha (S - D) + S,

with ``L = mean (f_i - y_i)^2``, ``S = mean sigma_i^2`` (the noise model) and
``D = mean sigma_i^2 df_i/dy_i`` (how much of its own pixel the network passes through,
estimated with one extra pass on ``y + eps * v``, ``v`` random signs). The best weight is
``alpha = (S - D) / L`` clipped to ``[0, 1]`` (``sigma^2 / (sigma^2 + e^2)`` for a blind
network, 0 for one that copies its input), and the gain ``10 log10(S / E|b - x|^2)`` is what
predict writes gains over the raw image (:class:`SureTerms`, used by
:mod:`jumpdenoise.quality.gain`).

The weights are stored per channel in the run's ``quality.json`` (``blend_weight``), for the
checkpoint they were measured on; :func:`blend_weights` returns them for a loaded checkpoint,
and :class:`~jumpdenoise.predict.engine.Predictor` applies them to every field it denoises.
A weight of 1 keeps the network's output alone, 0 the raw image.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["SureTerms", "blend_weights"]

log = logging.getLogger(__name__)


class SureTerms:
    """Running sums of one channel's SURE terms over held-out pixels (no per-pixel storage).

    Per pixel: ``a = (f_i - y_i)^2``, ``c = sigma_i^2 (1 - df_i/dy_i)`` and ``s = sigma_i^2``;
    the risk of the blend with weight ``alpha`` is the mean of ``alpha^2 a - 2 alpha c + s``.
    """

    _KEYS = ("a", "c", "s", "aa", "cc", "ss", "ac", "as", "cs")

    def __init__(self) -> None:
        self.n = 0
        self.sums = dict.fromkeys(self._KEYS, 0.0)

    def add(self, residual: np.ndarray, variance: np.ndarray, divergence: np.ndarray) -> None:
        """Add pixels: ``f - y``, ``sigma^2`` and the divergence estimate ``v (f(y + eps v) - f(y)) / eps``."""
        a = np.square(np.asarray(residual, np.float64)).ravel()
        s = np.asarray(variance, np.float64).ravel()
        c = s * (1.0 - np.asarray(divergence, np.float64).ravel())
        for key, value in (("a", a), ("c", c), ("s", s)):
            self.sums[key] += float(value.sum())
        for key, (x, y) in (("aa", (a, a)), ("cc", (c, c)), ("ss", (s, s)), ("ac", (a, c)), ("as", (a, s)),
                            ("cs", (c, s))):
            self.sums[key] += float(np.dot(x, y))
        self.n += a.size

    def mean(self, key: str) -> float:
        """Mean of a per-pixel term (``"a"``, ``"c"``, ``"s"``)."""
        return self.sums[key] / self.n

    def weight(self) -> float:
        """The risk-minimising blend weight ``(S - D) / L`` clipped to ``[0, 1]``."""
        a, c = self.mean("a"), self.mean("c")
        if not (a > 0 and c > 0):
            return 0.0
        return float(min(1.0, c / a))

    def risk(self, alpha: float) -> tuple[float, float]:
        """Estimated mean squared error to the truth of the blend, and its standard error."""
        k = {"a": alpha * alpha, "c": -2.0 * alpha, "s": 1.0}
        m = {key: self.mean(key) for key in "acs"}
        mean = sum(k[t] * m[t] for t in "acs")
        second = sum(k[t] * k[u] * self.sums[t + u if t + u in self.sums else u + t] / self.n
                     for t in "acs" for u in "acs")
        var = max(0.0, second - mean * mean)
        return mean, (var / max(1, self.n - 1)) ** 0.5


def blend_weights(run_dir: str | Path | None, checkpoint: str | Path | None,
                  channels: Sequence[str] | None) -> np.ndarray | None:
    """The blend weight of each channel of a loaded checkpoint, or ``None`` to predict unblended.

    Parameters
    ----------
    run_dir
        The training run folder holding ``quality.json`` (``None``: no run folder).
    checkpoint
        The checkpoint file actually loaded; the weights apply only to the checkpoint they
        were measured on.
    channels
        The model's channel names, in its input order.

    Returns
    -------
    numpy.ndarray or None
        ``float32`` weights in model channel order; ``None`` when the run has no
        ``quality.json``, it was measured on another checkpoint (logged), or it lacks a
        channel.
    """
    if run_dir is None or checkpoint is None or not channels:
        return None
    path = Path(run_dir) / "quality.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("%s: not readable; predicting without blending the raw image in", path)
        return None
    measured = record.get("checkpoint")
    loaded = Path(checkpoint)
    if measured is None or Path(run_dir, measured).resolve() != loaded.resolve():
        log.warning("%s was measured on checkpoint %s, not on %s: predicting with the network's output alone "
                    "(no blend with the raw image)", path, measured, loaded.name)
        return None
    entries = record.get("channels") or {}
    try:
        return np.asarray([float(entries[ch]["blend_weight"]) for ch in channels], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        return None
