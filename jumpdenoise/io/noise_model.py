"""Poisson-Gaussian noise model of a camera image, and its fit from one image.

Model (per channel): a pixel whose expected value is ``mu`` ADU reads
``offset + gain * Poisson((mu - offset) / gain) + Normal(0, read_noise**2)``, so that its
variance is the straight line ``var = gain * (mu - offset) + read_noise**2``. Neighbouring
pixels may share part of their noise (an instrument that resamples its images): the noise is
then filtered along rows and columns by the unit-energy taps ``[t, 1, t]`` whose output has
the neighbour correlation ``correlation`` (:func:`correlation_taps`); each pixel keeps its
variance.

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

Correlated noise: the Laplacian of step 1 cancels the part of the noise that neighbouring
pixels share, so on noise of neighbour correlation 0.5 its output holds only 0.31 of the
noise variance (:func:`laplacian_share`), while the Laplacian of pixels two apart holds 0.9.
The fit computes both residuals in every smooth block; their median ratio over the darker
half of the level bins (the background, where neither finds signal) gives the correlation
through the model (:func:`noise_correlation`). From :data:`MIN_CORRELATION` on, the smooth
blocks are chosen again against the noise variance and the line of step 5 is fitted through
the neighbours' Laplacian variances divided by their share; the model records the correlation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["MAX_CORRELATION", "MIN_CORRELATION", "NoiseModel", "add_poisson_gaussian_noise", "correlation_taps",
           "filter_to_correlation", "fit_poisson_gaussian", "laplacian_share", "noise_correlation",
           "taps_autocorrelation"]

#: Neighbour correlation from which the noise counts as correlated (white noise measures less than 0.05).
MIN_CORRELATION = 0.15


def _laplacian(stride: int) -> np.ndarray:
    """The Laplacian of pixels ``stride`` apart, over ``sqrt(20)``: it keeps the variance of white noise."""
    k = np.zeros((2 * stride + 1, 2 * stride + 1))
    k[stride, stride] = 4.0
    k[0, stride] = k[-1, stride] = k[stride, 0] = k[stride, -1] = -1.0
    return k / np.sqrt(20.0)


#: Largest neighbour correlation the taps ``[t, 1, t]`` give (at ``t = 1 / sqrt(2)``), rounded down.
MAX_CORRELATION = 0.7


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
    correlation
        Correlation of the noise of neighbouring pixels (along rows and columns; 0: white).
    """

    gain: float
    offset: float
    read_noise: float
    correlation: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.correlation <= MAX_CORRELATION:
            raise ValueError(f"correlation must be between 0 and {MAX_CORRELATION}, got {self.correlation!r}")

    def variance(self, mean: np.ndarray | float) -> np.ndarray | float:
        """Noise variance (ADU^2) of a pixel whose expected value is ``mean``."""
        return self.gain * np.clip(np.asarray(mean, np.float64) - self.offset, 0, None) + self.read_noise**2

    def as_dict(self) -> dict[str, float]:
        """``{"gain": ..., "offset": ..., "read_noise": ..., "correlation": ...}`` (JSON-ready floats)."""
        return {k: float(v) for k, v in asdict(self).items()}


def correlation_taps(rho: float) -> np.ndarray:
    """The unit-energy taps ``[t, 1, t] / sqrt(1 + 2 t^2)`` that give white noise the neighbour correlation ``rho``.

    Applied along rows and along columns (separable), the filtered noise keeps its variance
    and has correlation ``rho`` between pixels one apart in a row or column,
    ``t^2 / (1 + 2 t^2)`` two apart and ``rho^2`` diagonally (as measured on real Phenix
    fields, ``docs/NOISE_MODEL.md``). ``2 t / (1 + 2 t^2) = rho`` gives
    ``t = (1 - sqrt(1 - 2 rho^2)) / (2 rho)``.
    """
    if not 0.0 <= rho <= MAX_CORRELATION:
        raise ValueError(f"neighbour correlation must be between 0 and {MAX_CORRELATION}, got {rho!r}")
    t = 0.0 if rho == 0 else (1.0 - np.sqrt(1.0 - 2.0 * rho * rho)) / (2.0 * rho)
    return np.array([t, 1.0, t]) / np.sqrt(1.0 + 2.0 * t * t)


def taps_autocorrelation(rho: float) -> np.ndarray:
    """``[1, r1, r2]``: correlation 0, 1 and 2 pixels apart along an axis of noise made by :func:`correlation_taps`.

    ``r1`` is ``rho``; three and more apart the correlation is 0. The filter is separable: two
    pixels ``(dy, dx)`` apart have the correlation ``r[|dy|] * r[|dx|]``.
    """
    taps = correlation_taps(rho)
    t = float(taps[0] / taps[1])
    return np.array([1.0 + 2.0 * t * t, 2.0 * t, t * t]) / (1.0 + 2.0 * t * t)


def filter_to_correlation(noise: np.ndarray, rho: float, mode: str = "reflect") -> np.ndarray:
    """2-D white ``noise`` filtered by :func:`correlation_taps` along rows and columns (float32).

    Its pixels keep their variance and neighbours get the correlation ``rho``; ``mode`` is the
    border handling of :func:`scipy.ndimage.correlate1d` (``"wrap"`` keeps every pixel's
    statistics the same on a periodic field).
    """
    from scipy.ndimage import correlate1d

    taps = correlation_taps(rho).astype(np.float32)
    return correlate1d(correlate1d(np.asarray(noise, np.float32), taps, axis=0, mode=mode), taps, axis=1, mode=mode)


def laplacian_share(rho: float, stride: int = 1) -> float:
    """The share of the noise variance the scaled Laplacian of pixels ``stride`` apart keeps.

    For noise of neighbour correlation ``rho`` as the model makes it (:func:`correlation_taps`,
    separable): ``sum_ij k_i k_j R(p_i - p_j) / 20`` over the Laplacian's five taps ``k``. 1 on
    white noise; on ``rho = 0.45``, 0.37 for neighbours (``stride=1``) and 0.91 for pixels two
    apart.
    """
    r = taps_autocorrelation(rho)

    def corr(lag: int) -> float:
        return float(r[abs(lag)]) if abs(lag) < 3 else 0.0

    points = [((0, 0), 4.0), ((-stride, 0), -1.0), ((stride, 0), -1.0), ((0, -stride), -1.0), ((0, stride), -1.0)]
    total = sum(ki * kj * corr(pj[0] - pi[0]) * corr(pj[1] - pi[1])
                for pi, ki in points for pj, kj in points)
    return total / 20.0


def _correlation_from_ratio(ratio: float) -> float:
    """The ``rho`` whose ``laplacian_share(rho, 1) / laplacian_share(rho, 2)`` is ``ratio`` (0 at or above 1)."""
    if ratio >= 1.0:
        return 0.0
    lo, hi = 0.0, MAX_CORRELATION
    if laplacian_share(hi, 1) / laplacian_share(hi, 2) >= ratio:
        return hi
    for _ in range(50):  # the ratio falls as rho grows
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if laplacian_share(mid, 1) / laplacian_share(mid, 2) > ratio else (lo, mid)
    return (lo + hi) / 2


def add_poisson_gaussian_noise(expected: np.ndarray, model: NoiseModel, rng: np.random.Generator) -> np.ndarray:
    """One noisy draw (float32, not rounded or clipped) of a 2-D image of expected values in ADU.

    With ``model.correlation > 0`` the noise (the draw less its expected value) is filtered by
    :func:`correlation_taps` along both axes; the noise is drawn one pixel beyond each border so
    that the border pixels have the same statistics as the rest.
    """
    expected = np.asarray(expected, np.float32)
    pad = 1 if model.correlation > 0 else 0
    grown = np.pad(expected, pad, mode="edge") if pad else expected
    photons = np.clip((grown - model.offset) / model.gain, 0, None)
    mean = np.float32(model.offset) + np.float32(model.gain) * photons.astype(np.float32)
    noisy = np.float32(model.offset) + np.float32(model.gain) * rng.poisson(photons).astype(np.float32)
    noisy += rng.standard_normal(grown.shape, dtype=np.float32) * np.float32(model.read_noise)
    if not pad:
        return noisy
    return (mean + filter_to_correlation(noisy - mean, model.correlation))[1:-1, 1:-1]


def _block_view(a: np.ndarray, block: int) -> np.ndarray:
    ny, nx = a.shape[0] // block, a.shape[1] // block
    return a[: ny * block, : nx * block].reshape(ny, block, nx, block).swapaxes(1, 2).reshape(ny * nx, block * block)


def level_variance_points(image: np.ndarray, *, block: int = 8, n_bins: int = 40,
                          max_texture: float = 0.5, strides: tuple[int, ...] = (1,),
                          noise_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(level, Laplacian residual variances) points of the smooth parts of ``image``, one per level bin.

    On white noise a residual's variance is the noise variance; on correlated noise, that
    times :func:`laplacian_share`.

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
    strides
        Distances of the Laplacians' taps from their centre (1: neighbours), one residual each;
        the last one's variance, times ``noise_scale``, is the bin's noise reference for the
        smoothness test.
    noise_scale
        The noise variance over the last residual's variance (1 on white noise;
        ``1 / laplacian_share(rho)`` for the neighbours' Laplacian on correlated noise, nearly 1
        for the Laplacian of pixels two apart): the smoothness test compares the texture with the
        noise variance.

    Returns
    -------
    tuple of numpy.ndarray
        Levels (ADU), length ``n <= n_bins``, and variances (ADU^2), ``(n, len(strides))``.
    """
    from scipy import ndimage as ndi
    from scipy.stats import chi2

    img = np.asarray(image, np.float64)
    if img.ndim != 2 or min(img.shape) < 4 * block:
        raise ValueError(f"need a 2D image of at least {4 * block} x {4 * block} pixels, got shape {img.shape}")
    level = ndi.uniform_filter(img, 5, mode="reflect")
    texture = ndi.gaussian_filter(img, 2.0, mode="reflect")
    crop = (slice(2, -2), slice(2, -2))  # drop the border, where the filters reflect
    lev_b = _block_view(level[crop], block).mean(axis=1)
    tex_b = _block_view(texture[crop], block).var(axis=1)
    raw_b = _block_view(img[crop], block)
    var_b = np.stack([_block_view(ndi.convolve(img, _laplacian(s), mode="reflect")[crop], block).var(axis=1, ddof=1)
                      for s in strides], axis=1)
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
        reference = np.median(var_b[calm, -1]) * noise_scale
        smooth = idx[tex_b[idx] <= max_texture * reference]
        if smooth.size < 8:
            continue
        levels.append(float(np.median(lev_b[smooth])))
        variances.append(np.median(var_b[smooth], axis=0) / median_bias)
    if len(levels) < 4:
        raise ValueError(f"too few smooth level bins ({len(levels)}) to fit a noise model")
    return np.asarray(levels), np.asarray(variances, np.float64)


def _correlation_of_points(both: np.ndarray) -> float:
    """The neighbour correlation from ``(n, 2)`` Laplacian variances of pixels one and two apart per level bin.

    From the darker half of the bins, the background, where the Laplacian of pixels two apart
    finds no signal: the median ratio of the two, inverted through the model
    (:func:`laplacian_share`).
    """
    ratios = both[:, 0] / both[:, 1]
    return _correlation_from_ratio(float(np.median(ratios[: max(2, len(ratios) // 2)])))


def noise_correlation(image: np.ndarray, *, block: int = 8, n_bins: int = 40) -> float | None:
    """The neighbour correlation of ``image``'s noise as :func:`fit_poisson_gaussian` measures it.

    ``None`` when the image is too small or too textured for the measure (see
    :func:`level_variance_points`); below :data:`MIN_CORRELATION` it is not told from white noise.
    A small image gets fewer level bins (one per 8 blocks, at least 4).
    """
    shape = np.shape(image)
    blocks = ((shape[0] - 4) // block) * ((shape[1] - 4) // block) if len(shape) == 2 else 0
    try:
        _, both = level_variance_points(image, block=block, n_bins=max(4, min(n_bins, blocks // 8)),
                                        strides=(1, 2))
    except ValueError:
        return None
    return _correlation_of_points(both)


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

    levels, both = level_variance_points(image, block=block, n_bins=n_bins, strides=(1, 2))
    near = both[:, 0]
    rho = _correlation_of_points(both)
    if rho >= MIN_CORRELATION:  # the variances from the neighbours' Laplacian (it finds least signal)
        share = laplacian_share(rho, 1)
        levels, near = level_variance_points(image, block=block, n_bins=n_bins, noise_scale=1.0 / share)
        variances = near[:, 0] / share
    else:
        rho, variances = 0.0, near
    slope, _, _, _ = theilslopes(variances, levels)
    slope = max(float(slope), 1e-6)
    intercept = float(np.median(variances - slope * levels))
    img = np.asarray(image, np.float64)
    block_levels = _block_view(img, block).mean(axis=1)
    offset = float(np.percentile(block_levels, offset_percentile))
    read_var = slope * offset + intercept
    if read_var <= 0:  # the line crosses zero above the darkest level: fall back on the darkest bin
        read_var = float(variances[0])
    return NoiseModel(gain=slope, offset=offset, read_noise=float(np.sqrt(read_var)), correlation=round(rho, 3))
