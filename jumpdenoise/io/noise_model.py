"""Poisson-Gaussian noise model of a camera image, and its fit from one image.

Model (per channel): a pixel whose expected value is ``mu`` ADU reads
``offset + gain * Poisson((mu - offset) / gain) + Normal(0, read_noise**2)``, so that its
variance is the straight line ``var = gain * (mu - offset) + read_noise**2``.

Fit (:func:`fit_poisson_gaussian`), after Foi et al. (2008), "Practical Poissonian-Gaussian
noise modeling and fitting for single-image raw-data", IEEE TIP 17(10):

1. Noise residual: a second-order high-pass (the 3 x 3 discrete Laplacian, scaled so that its
   output has the variance of the noise on white noise); it removes any locally linear signal.
2. Local level: the 5 x 5 mean of the image.
3. The image is cut into small blocks (8 x 8). Each block gives one (mean level, residual
   variance) point; blocks with a clipped pixel (0 or 65535) are dropped.
4. Only smooth blocks are kept: those whose signal texture (the variance, within the block,
   of a 2-pixel Gaussian-smoothed image, where noise is averaged away and structure is not)
   is below ``max_texture`` times the noise variance of their level. Blocks are split into a
   few dozen level bins of equal counts; the bin's noise reference is the median residual
   variance of its least-textured quarter; the bin's variance is the median residual
   variance of its smooth blocks (corrected for the median of a chi-square).
5. A robust straight line through the (level, variance) points: Theil-Sen slope, then the
   intercept from the median, giving ``var = a * mu + b``. ``gain = a``.
6. The offset (black level) is the dark background: the 0.5th percentile of the block levels.
   The read noise is the model's noise at that level, ``sqrt(a * offset + b)``, so that the
   fitted line is reproduced at every level from the darkest background up. Without dark
   frames the camera's true black level and the background's own photons cannot be told
   apart; this choice folds the background photons into ``read_noise``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["NoiseModel", "fit_poisson_gaussian", "add_poisson_gaussian_noise"]

#: Laplacian kernel; the sum of its squared weights is 20, so ``/ sqrt(20)`` keeps white-noise variance.
_LAPLACIAN = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float64) / np.sqrt(20.0)


@dataclass(frozen=True)
class NoiseModel:
    """Poisson-Gaussian noise of one channel, in ADU.

    Attributes
    ----------
    gain
        ADU per photo-electron (the slope of variance against mean).
    offset
        Black level: the expected value of a pixel that receives no signal.
    read_noise
        Standard deviation of the Gaussian part, in ADU.
    """

    gain: float
    offset: float
    read_noise: float

    def variance(self, mean: np.ndarray | float) -> np.ndarray | float:
        """Noise variance (ADU^2) of a pixel whose expected value is ``mean``."""
        return self.gain * np.clip(np.asarray(mean, np.float64) - self.offset, 0, None) + self.read_noise**2

    def as_dict(self) -> dict[str, float]:
        """``{"gain": ..., "offset": ..., "read_noise": ...}`` (JSON-ready floats)."""
        return {k: float(v) for k, v in asdict(self).items()}


def add_poisson_gaussian_noise(expected: np.ndarray, model: NoiseModel, rng: np.random.Generator) -> np.ndarray:
    """One noisy draw (float32, not rounded or clipped) of an image of expected values in ADU."""
    photons = np.clip((expected - model.offset) / model.gain, 0, None)
    noisy = np.float32(model.offset) + np.float32(model.gain) * rng.poisson(photons).astype(np.float32)
    noisy += rng.standard_normal(expected.shape, dtype=np.float32) * np.float32(model.read_noise)
    return noisy


def _block_view(a: np.ndarray, block: int) -> np.ndarray:
    ny, nx = a.shape[0] // block, a.shape[1] // block
    return a[: ny * block, : nx * block].reshape(ny, block, nx, block).swapaxes(1, 2).reshape(ny * nx, block * block)


def level_variance_points(image: np.ndarray, *, block: int = 8, n_bins: int = 40,
                          max_texture: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(level, noise variance) points of the smooth parts of ``image``, one per level bin.

    Parameters
    ----------
    image
        2D camera image in ADU (any numeric dtype).
    block
        Side of the square blocks that give one (level, variance) sample each.
    n_bins
        Level bins (equal block counts); one point per bin.
    max_texture
        A block is smooth when the variance of its 2-pixel Gaussian-smoothed image is at most
        this times the noise variance of its level bin (white noise alone gives about 0.03).

    Returns
    -------
    tuple of numpy.ndarray
        Levels (ADU) and variances (ADU^2), both of length <= ``n_bins``.
    """
    from scipy import ndimage as ndi
    from scipy.stats import chi2

    img = np.asarray(image, np.float64)
    if img.ndim != 2 or min(img.shape) < 4 * block:
        raise ValueError(f"need a 2D image of at least {4 * block} x {4 * block} pixels, got shape {img.shape}")
    residual = ndi.convolve(img, _LAPLACIAN, mode="reflect")
    level = ndi.uniform_filter(img, 5, mode="reflect")
    texture = ndi.gaussian_filter(img, 2.0, mode="reflect")
    crop = (slice(2, -2), slice(2, -2))  # drop the border, where the filters reflect
    res_b = _block_view(residual[crop], block)
    lev_b = _block_view(level[crop], block).mean(axis=1)
    tex_b = _block_view(texture[crop], block).var(axis=1)
    raw_b = _block_view(img[crop], block)
    var_b = res_b.var(axis=1, ddof=1)
    unclipped = (raw_b.min(axis=1) > 0) & (raw_b.max(axis=1) < 65535)
    lev_b, var_b, tex_b = lev_b[unclipped], var_b[unclipped], tex_b[unclipped]
    if lev_b.size < 8 * n_bins:
        raise ValueError(f"too few unclipped {block} x {block} blocks ({lev_b.size}) to fit a noise model")
    dof = block * block - 1
    median_bias = chi2.median(dof) / dof
    levels, variances = [], []
    for idx in np.array_split(np.argsort(lev_b), n_bins):
        # reference noise variance of the bin: its least-textured quarter (not each block's own
        # variance, which would favour blocks whose noise happens to be high)
        calm = idx[np.argsort(tex_b[idx])[: max(8, idx.size // 4)]]
        reference = np.median(var_b[calm])
        smooth = idx[tex_b[idx] <= max_texture * reference]
        if smooth.size < 8:
            continue
        levels.append(float(np.median(lev_b[smooth])))
        variances.append(float(np.median(var_b[smooth]) / median_bias))
    if len(levels) < 4:
        raise ValueError(f"too few smooth level bins ({len(levels)}) to fit a noise model")
    return np.asarray(levels), np.asarray(variances)


def fit_poisson_gaussian(image: np.ndarray, *, block: int = 8, n_bins: int = 40,
                         offset_percentile: float = 0.5) -> NoiseModel:
    """Fit gain, offset and read noise of a Poisson-Gaussian model to one image.

    Parameters
    ----------
    image
        2D camera image in ADU.
    block, n_bins
        See :func:`level_variance_points`.
    offset_percentile
        Percentile of the block levels taken as the black level (the dark background).

    Returns
    -------
    NoiseModel
        The fitted model (see the module docstring for the method).
    """
    from scipy.stats import theilslopes

    levels, variances = level_variance_points(image, block=block, n_bins=n_bins)
    slope, _, _, _ = theilslopes(variances, levels)
    slope = max(float(slope), 1e-6)
    intercept = float(np.median(variances - slope * levels))
    img = np.asarray(image, np.float64)
    block_levels = _block_view(img, block).mean(axis=1)
    offset = float(np.percentile(block_levels, offset_percentile))
    read_var = slope * offset + intercept
    if read_var <= 0:  # the line crosses zero above the darkest level: fall back on the darkest bin
        read_var = float(variances[0])
    return NoiseModel(gain=slope, offset=offset, read_noise=float(np.sqrt(read_var)))
