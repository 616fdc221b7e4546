"""The noise-optimal blend of a Noise2Void prediction with its raw input, per channel.

A blind-spot network's prediction ``f_i`` of pixel ``i`` is made without seeing the noisy
value ``y_i = x_i + n_i``, so its error ``f_i - x_i`` is independent of the noise ``n_i``.
Both are estimates of the truth ``x_i``: ``f_i`` with error variance ``e^2``, ``y_i`` with the
noise variance ``sigma^2``. Their best linear combination (the Gaussian case of the
minimum-mean-square-error estimate that Probabilistic Noise2Void computes per pixel) is

    b_i = alpha * f_i + (1 - alpha) * y_i,   alpha = sigma^2 / (sigma^2 + e^2),

with error ``sigma^2 * (1 - alpha)``: lower than both the raw image's (``sigma^2``) and the
network's (``e^2``). Both terms are measured without ground truth on held-out fields
(:mod:`jumpdenoise.quality.gain`): the masked N2V error there is ``L = e^2 + sigma^2``, so

    alpha = sigma^2 / L  and the gain of ``b`` over the raw image is ``-10 log10(1 - alpha)`` dB.

The weights are stored per channel in the run's ``quality.json`` (``blend_weight``), for the
checkpoint they were measured on; :func:`blend_weights` returns them for a loaded checkpoint,
and :class:`~jumpdenoise.predict.engine.Predictor` applies them to every field it denoises.
A weight of 1 keeps the network's output alone, 0 the raw image.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["blend_weight", "blended_gain_db", "blend_weights"]

log = logging.getLogger(__name__)


def blend_weight(noise_variance: float, masked_mse: float) -> float:
    """``alpha = sigma^2 / L`` clipped to ``[0, 1]`` (``L``: the masked N2V error)."""
    if not (math.isfinite(noise_variance) and math.isfinite(masked_mse)) or masked_mse <= 0:
        return 0.0
    return float(min(1.0, max(0.0, noise_variance / masked_mse)))


def blended_gain_db(alpha: float) -> float | None:
    """Expected gain in dB of the blend over the raw image, ``-10 log10(1 - alpha)``.

    ``None`` when ``alpha`` is 1 (the network's error is estimated as zero: beyond what the
    held-out sample can measure).
    """
    if alpha >= 1.0:
        return None
    return float(-10.0 * math.log10(1.0 - alpha))


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
