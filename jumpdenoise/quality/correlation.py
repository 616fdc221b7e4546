"""Is the noise correlated between neighbouring pixels? Measured on raw images, without truth.

A Noise2Void network predicts each pixel from its neighbours, blind to the pixel itself. That
works when the noise is independent between pixels. When neighbouring pixels share part of
their noise (a camera that interpolates, an instrument that resamples its images: real Phenix
fields of the JUMP plates, the widefield captures of FMD), the network learns to predict the
noise from the neighbours and passes it through. Their 2 x 2 phase sub-images
(``y[py::2, px::2]``) hold pixels two apart, whose noise is nearly independent: training and
predicting on them (``train.n2v.phase_split``, :mod:`jumpdenoise.compute.phases`) restores the
blind spot.

The measure (:func:`neighbour_correlation`): on the flattest 16 x 16 blocks of an image (the
fifth with the least variance around a fitted plane), the mean squared difference of pixels
``d`` apart along rows and columns, ``D(d)``, for ``d = 1 .. 4``. Noise independent beyond
lag 1 plus a smooth signal gives ``D(d) = 2 s2 (1 - rho_d) + G d^2`` with ``rho_d = 0`` for
``d >= 2``: ``G`` and ``s2`` come from ``D(2)``, ``D(3)``, and ``rho_1 = 1 - (D(1) - G) / (2 s2)``.
When the signal's share of ``D(2)``, ``4 G / D(2)``, exceeds :data:`MAX_SIGNAL_SHARE` (fine
structure at high signal-to-noise ratio in even the flattest blocks), the correlation is not
measurable and the image counts as white.

Measured values (``rho_1``): FMD confocal and two-photon types 0.02-0.13, FMD widefield
0.49-0.51; real Phenix fields of ../shared/data/jump 0.45-0.46 on every channel (0.05-0.11
in their phase sub-images); BSD with Gaussian noise 0.01; synthetic plates of
:mod:`jumpdenoise.io.synthetic` (noise of the real fields' correlation, 0.49-0.51): 0.42-0.45
where measurable (the flattest blocks read a little low).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jumpdenoise.io.noise_model import MIN_CORRELATION, filter_to_correlation, noise_correlation, taps_autocorrelation

__all__ = ["CORRELATED_RHO", "MAX_SIGNAL_SHARE", "NeighbourCorrelation", "choose_phase_split",
           "correlated_probe", "neighbour_correlation", "sure_correlation", "variance_scale"]

BLOCK = 16
FLAT_FRACTION = 0.2
#: Largest share of ``D(2)`` the signal may take for the correlation to count as measured.
MAX_SIGNAL_SHARE = 0.25
#: Neighbour correlation of the noise from which a channel counts as correlated.
CORRELATED_RHO = 0.25


@dataclass(frozen=True)
class NeighbourCorrelation:
    """The noise's correlation between neighbouring pixels of one channel.

    ``rho1``: the correlation (``None`` when not measurable); ``signal_share``: the signal's
    share of ``D(2)``; ``n_blocks``: flat blocks it was measured on.
    """

    rho1: float | None
    signal_share: float
    n_blocks: int

    @property
    def correlated(self) -> bool:
        """Measured, and at least :data:`CORRELATED_RHO`."""
        return self.rho1 is not None and self.rho1 >= CORRELATED_RHO

    def as_dict(self) -> dict:
        """JSON-able form."""
        return {"rho1": self.rho1, "signal_share": self.signal_share, "n_blocks": self.n_blocks,
                "correlated": self.correlated}


def _flat_blocks(plane: np.ndarray) -> np.ndarray:
    """The flattest :data:`FLAT_FRACTION` of the plane's ``BLOCK x BLOCK`` blocks, ``(n, B, B)``."""
    y = np.asarray(plane, dtype=np.float64)
    h, w = (y.shape[0] // BLOCK) * BLOCK, (y.shape[1] // BLOCK) * BLOCK
    if h == 0 or w == 0:
        return np.empty((0, BLOCK, BLOCK))
    blocks = y[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).swapaxes(1, 2).reshape(-1, BLOCK, BLOCK)
    yy, xx = np.mgrid[:BLOCK, :BLOCK]
    design = np.stack([np.ones(BLOCK * BLOCK), yy.ravel(), xx.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, blocks.reshape(len(blocks), -1).T, rcond=None)
    residual = blocks - (design @ coef).T.reshape(-1, BLOCK, BLOCK)
    order = np.argsort(residual.var(axis=(1, 2)), kind="stable")
    return blocks[order[: max(1, int(len(blocks) * FLAT_FRACTION))]]


def _lag_power(blocks: np.ndarray, d: int) -> float:
    rows = (blocks[:, :, d:] - blocks[:, :, :-d]) ** 2
    cols = (blocks[:, d:, :] - blocks[:, :-d, :]) ** 2
    return float((rows.sum() + cols.sum()) / (rows.size + cols.size))


def _signal_part(d2: float, d3: float) -> tuple[float, float]:
    """``G`` of ``D(d) = 2 s2 + G d^2`` (``d >= 2``) from ``D(2)`` and ``D(3)``, and the signal's share of ``D(2)``."""
    grad = max(0.0, (d3 - d2) / 5.0)
    return grad, (4 * grad / d2 if d2 > 0 else 1.0)


def neighbour_correlation(planes: Sequence[np.ndarray]) -> NeighbourCorrelation:
    """The noise's neighbour correlation of one channel from its raw 2-D planes (module docstring).

    Each plane is measured alone and the median taken over planes.
    """
    profiles = []
    n_blocks = 0
    for plane in planes:
        blocks = _flat_blocks(plane)
        if len(blocks):
            profiles.append([_lag_power(blocks, d) for d in (1, 2, 3)])
            n_blocks += len(blocks)
    if not profiles:
        return NeighbourCorrelation(None, 1.0, 0)
    d1, d2, d3 = (float(v) for v in np.median(np.asarray(profiles), axis=0))
    grad, share = _signal_part(d2, d3)
    noise2 = d2 - 4 * grad  # 2 s2
    if share > MAX_SIGNAL_SHARE or noise2 <= 0:
        return NeighbourCorrelation(None, round(share, 4), n_blocks)
    return NeighbourCorrelation(round(float(1.0 - (d1 - grad) / noise2), 4), round(share, 4), n_blocks)


def choose_phase_split(per_channel: Mapping[str, NeighbourCorrelation]) -> int:
    """2 when at least half of the channels whose correlation is measurable are correlated, else 1.

    One network serves every channel, so the choice is the model's; a plate's channels come
    from one camera (the real Phenix fields: every channel alike).
    """
    measured = [c for c in per_channel.values() if c.rho1 is not None]
    if not measured:
        return 1
    return 2 if 2 * sum(c.correlated for c in measured) >= len(measured) else 1


def variance_scale(planes: Sequence[np.ndarray], model: Any) -> float | None:
    """The noise variance of pixels two apart over what ``model`` gives there, on the flattest blocks.

    ``(D(2) - 4 G) / 2`` is the noise variance when the noise is independent two pixels apart
    (module docstring), whatever its correlation between neighbours; ``model`` (a
    :class:`~jumpdenoise.quality.noise.NoiseVariance`) is evaluated on the same blocks' pixels.
    A fit that misses part of a correlated noise (on phase sub-images whose noise keeps a residual
    correlation) is scaled by this ratio. The median over planes; ``None`` where no plane is
    measurable. The flattest blocks are also those whose noise happened to be small, so the ratio
    reads about 15 % low on white noise; it corrects a fit only upwards.
    """
    ratios = []
    for plane in planes:
        blocks = _flat_blocks(plane)
        if not len(blocks):
            continue
        d2, d3 = _lag_power(blocks, 2), _lag_power(blocks, 3)
        grad, share = _signal_part(d2, d3)
        fitted = float(np.mean(model.variance(blocks)))
        if d2 <= 0 or share > MAX_SIGNAL_SHARE or fitted <= 0:
            continue
        ratios.append((d2 - 4 * grad) / 2.0 / fitted)
    return float(np.median(ratios)) if ratios else None


def sure_correlation(fields: Sequence[np.ndarray], phase_split: int, known: float | None = None) -> float:
    """The noise's neighbour correlation in the images predict runs: the whole ``fields`` (2-D
    planes), or their phase sub-images, whose pixels are ``phase_split`` apart.

    ``known`` (a camera model's), else measured on the whole fields
    (:func:`jumpdenoise.io.noise_model.noise_correlation`, the median over fields; where no
    field is measurable, :func:`neighbour_correlation` over all of them); for phase sub-images,
    the correlation of pixels two apart that the noise model gives
    (:func:`~jumpdenoise.io.noise_model.taps_autocorrelation`). 0 when not measurable or too
    weak to tell from white noise.
    """
    if known is not None:
        rho = float(known)
    else:
        measured = [r for r in (noise_correlation(f) for f in fields) if r is not None]
        rho = float(np.median(measured)) if measured else (neighbour_correlation(fields).rho1 or 0.0)
    if rho < MIN_CORRELATION:
        return 0.0
    return rho if phase_split == 1 else float(taps_autocorrelation(rho)[2])


def correlated_probe(rng: np.random.Generator, shape: tuple[int, ...], correlations: Sequence[float]) -> np.ndarray:
    """Random signs per pixel, each channel's filtered to its noise's neighbour correlation (unit variance)."""
    probe = rng.choice(np.asarray([-1.0, 1.0], np.float32), size=shape)
    for c, rho in enumerate(correlations):
        if rho > 0:
            probe[c] = filter_to_correlation(probe[c], rho, mode="wrap")
    return probe
