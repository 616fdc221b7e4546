"""Poisson-Gaussian noise, white or correlated: the generator makes the model's noise, the fit recovers it,
the constants match the real fields."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from scipy import ndimage as ndi

from jumpdenoise.io.noise_model import (
    NoiseModel,
    add_poisson_gaussian_noise,
    correlation_taps,
    fit_poisson_gaussian,
    laplacian_share,
)
from jumpdenoise.io.synthetic import JUMP_NOISE, noise_models

JUMP_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "jump"
FLUORESCENCE = ("DNA", "ER", "RNA", "AGP", "Mito")


def _cells(shape: tuple[int, int], peak: float, seed: int) -> np.ndarray:
    """Smooth blobs of up to ``peak`` on a zero background (expected photons above offset, in ADU)."""
    rng = np.random.default_rng(seed)
    dots = np.zeros(shape, np.float32)
    dots[rng.integers(0, shape[0], 300), rng.integers(0, shape[1], 300)] = 1
    blobs = ndi.gaussian_filter(dots, 12)
    return (peak * blobs / blobs.max()).astype(np.float32)


@pytest.mark.parametrize("model", [NoiseModel(gain=0.2, offset=300.0, read_noise=9.0),
                                   NoiseModel(gain=2.5, offset=100.0, read_noise=4.0)])
def test_fit_recovers_known_gain_offset_and_read_noise(model):
    expected = model.offset + _cells((1024, 1024), 3000 * model.gain, seed=1)
    noisy = np.clip(np.rint(add_poisson_gaussian_noise(expected, model, np.random.default_rng(2))), 0, 65535)
    fit = fit_poisson_gaussian(noisy.astype(np.uint16))
    assert fit.gain == pytest.approx(model.gain, rel=0.10)
    assert fit.read_noise == pytest.approx(model.read_noise, rel=0.10)
    assert fit.offset == pytest.approx(model.offset, abs=model.read_noise)


def test_fit_refuses_too_small_images():
    with pytest.raises(ValueError, match="at least"):
        fit_poisson_gaussian(np.zeros((16, 16), np.uint16))


def _real_fluorescence_fields() -> list[tuple[str, str, Path]]:
    """(source, stain, TIFF) of every real fluorescence field; stains from the plates' own metadata."""
    from jumpdenoise.config import SourceConfig
    from jumpdenoise.io.discovery import discover

    v1 = JUMP_DATA / "phenix_v1"
    dye_to_stain = yaml.safe_load((v1 / "config_v1.yml").read_text())["channels"]
    field = discover(SourceConfig(path=v1 / "images")).wells[0].fields[0]
    out = [("phenix_v1", dye_to_stain[dye].removeprefix("Orig"), Path(ref.path)) for dye, ref in field.planes.items()]
    cpg = JUMP_DATA / "cpg0000_BR00117010"
    table = json.loads((cpg / "channel_table.json").read_text())
    for path in sorted((cpg / "Images").glob("*.tiff")):
        out.append(("cpg0000", table[re.search(r"-(ch\d+)sk", path.name).group(1)], path))
    return [item for item in out if item[1] in FLUORESCENCE]


def test_generator_constants_match_a_fit_on_the_real_fields():
    if not JUMP_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real JUMP data missing: {JUMP_DATA}")
        pytest.skip(f"real JUMP data missing: {JUMP_DATA}")
    fields = _real_fluorescence_fields()
    assert sorted({stain for _, stain, _ in fields}) == sorted(FLUORESCENCE) and len(fields) == 10
    fits: dict[str, list[NoiseModel]] = {}
    for _, stain, path in fields:
        fits.setdefault(stain, []).append(fit_poisson_gaussian(tifffile.imread(path)))
    models = noise_models(FLUORESCENCE)
    for stain, found in fits.items():
        const = models[stain]
        for attr in ("gain", "offset", "read_noise", "correlation"):
            values = [getattr(m, attr) for m in found]
            # the constant is the mean of the per-file fits (docs/NOISE_MODEL.md)
            assert getattr(const, attr) == pytest.approx(np.mean(values), rel=0.03), (stain, attr, values)
    assert set(JUMP_NOISE) >= {"nuclei", "er", "rna", "agp", "mito"}


@pytest.mark.parametrize("rho", [0.3, 0.5])
def test_correlated_noise_has_the_requested_correlation_and_keeps_each_pixels_variance(rho):
    model = NoiseModel(gain=0.5, offset=200.0, read_noise=12.0, correlation=rho)
    expected = np.full((768, 768), 900.0, np.float32)
    noise = add_poisson_gaussian_noise(expected, model, np.random.default_rng(3)).astype(np.float64) - 900.0

    def corr(dy: int, dx: int) -> float:
        a = noise[: noise.shape[0] - dy, : noise.shape[1] - dx]
        return float(np.mean(a * noise[dy:, dx:]) / noise.var())

    taps = correlation_taps(rho)
    assert noise.var() == pytest.approx(model.variance(900.0), rel=0.02)
    assert corr(0, 1) == pytest.approx(rho, abs=0.01) and corr(1, 0) == pytest.approx(rho, abs=0.01)
    assert corr(1, 1) == pytest.approx(rho * rho, abs=0.01)
    assert corr(0, 2) == pytest.approx(taps[0] ** 2, abs=0.01)
    assert corr(0, 3) == pytest.approx(0.0, abs=0.01)
    # the Laplacian keeps the share of the variance laplacian_share says
    lap = ndi.convolve(noise, np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]]) / np.sqrt(20.0))[2:-2, 2:-2]
    assert lap.var() / noise.var() == pytest.approx(laplacian_share(rho), rel=0.03)


def test_white_noise_is_unchanged_by_a_zero_correlation():
    model = NoiseModel(gain=0.2, offset=300.0, read_noise=9.0)
    expected = np.full((64, 64), 500.0, np.float32)
    a = add_poisson_gaussian_noise(expected, model, np.random.default_rng(4))
    b = add_poisson_gaussian_noise(expected, dataclasses.replace(model, correlation=0.0), np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert laplacian_share(0.0) == 1.0 and laplacian_share(0.0, 2) == 1.0


def test_fit_recovers_the_noise_of_correlated_pixels():
    model = NoiseModel(gain=0.6, offset=260.0, read_noise=15.0, correlation=0.5)
    expected = model.offset + _cells((1024, 1024), 3000 * model.gain, seed=5)
    noisy = np.clip(np.rint(add_poisson_gaussian_noise(expected, model, np.random.default_rng(6))), 0, 65535)
    fit = fit_poisson_gaussian(noisy.astype(np.uint16))
    assert fit.correlation == pytest.approx(0.5, abs=0.03)
    assert fit.gain == pytest.approx(model.gain, rel=0.15)  # six draws of image and noise: 0.55-0.67
    assert fit.read_noise == pytest.approx(model.read_noise, rel=0.10)
    # the white-noise fit (the Laplacian alone) would see about a third of the variance
    assert laplacian_share(fit.correlation) < 0.35


@pytest.mark.parametrize("rho", [-0.1, 0.8])
def test_a_correlation_the_model_cannot_make_is_refused(rho):
    with pytest.raises(ValueError, match="correlation must be between 0 and 0.7"):
        NoiseModel(gain=0.2, offset=300.0, read_noise=9.0, correlation=rho)
