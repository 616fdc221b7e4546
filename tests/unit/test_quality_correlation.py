"""Noise correlated between neighbouring pixels: measured without truth, and the phase sub-images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.plates import correlated_noise
from PIL import Image
from shared_data import shared_data

from jumpdenoise.compute.phases import merge_phases, split_phases
from jumpdenoise.quality.correlation import (
    NeighbourCorrelation,
    choose_phase_split,
    neighbour_correlation,
)
from jumpdenoise.train.patches import sample_patches


def _scene(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return 500 + 0.4 * yy + 0.2 * xx + 80 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 3) ** 2) / (2 * 40.0 ** 2))


def test_white_noise_is_uncorrelated_and_averaged_noise_is_correlated() -> None:
    rng = np.random.default_rng(0)
    white = [_scene(256, rng) + rng.normal(0, 10, (256, 256)) for _ in range(2)]
    m = neighbour_correlation(white)
    assert m.rho1 is not None and abs(m.rho1) < 0.05 and not m.correlated and m.n_blocks > 0
    averaged = [_scene(256, rng) + correlated_noise((256, 256), rng, 10.0) for _ in range(2)]
    c = neighbour_correlation(averaged)
    assert c.rho1 == pytest.approx(0.5, abs=0.06) and c.correlated
    # two pixels apart, the averaged noise is independent again
    sub = neighbour_correlation([a[::2, ::2] for a in averaged])
    assert abs(sub.rho1) < 0.06 and not sub.correlated


def test_fine_structure_at_high_snr_is_not_measurable() -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:256, :256]
    texture = 1000 + 400 * np.sin(yy / 1.7) * np.cos(xx / 2.3)  # structure in every block
    m = neighbour_correlation([texture + rng.normal(0, 2, texture.shape)])
    assert m.rho1 is None and m.signal_share > 0.25 and not m.correlated
    assert neighbour_correlation([np.zeros((8, 8))]).rho1 is None  # no whole block


def test_choice_follows_the_measurable_channels() -> None:
    white, corr, unknown = NeighbourCorrelation(0.01, 0.0, 9), NeighbourCorrelation(0.45, 0.0, 9), \
        NeighbourCorrelation(None, 0.9, 9)
    assert choose_phase_split({"a": corr, "b": corr}) == 2
    assert choose_phase_split({"a": corr, "b": white}) == 2  # half of them
    assert choose_phase_split({"a": corr, "b": white, "c": white}) == 1
    assert choose_phase_split({"a": corr, "b": unknown, "c": unknown}) == 2
    assert choose_phase_split({"a": unknown}) == 1 and choose_phase_split({}) == 1


def test_real_phenix_and_fmd_widefield_noise_is_correlated() -> None:
    import tifffile

    fields = sorted(shared_data("jump", "cpg0000_BR00117010").rglob("*.tiff"))
    assert len(fields) >= 6
    measured = {p.name: neighbour_correlation([tifffile.imread(p)]) for p in fields[:6]}
    assert all(0.35 < m.rho1 < 0.55 for m in measured.values()), measured
    assert choose_phase_split(measured) == 2
    raw = shared_data("fluo", "fmd_testset", "raw")

    def fmd(kind: str) -> list[np.ndarray]:
        return [np.asarray(Image.open(raw / f"{kind}_{k}.png").convert("L")) for k in (1, 3)]

    assert neighbour_correlation(fmd("WideField_BPAE_G")).correlated
    assert not neighbour_correlation(fmd("Confocal_MICE")).correlated
    assert not neighbour_correlation(fmd("TwoPhoton_BPAE_B")).correlated


@pytest.mark.parametrize("shape", [(2, 6, 8), (1, 7, 5)])
def test_phase_split_and_merge_round_trip(shape: tuple[int, ...]) -> None:
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    parts = split_phases(x, 2)
    assert len(parts) == 4 and parts[1][0, 0, 0] == x[0, 0, 1] and parts[2][0, 0, 0] == x[0, 1, 0]
    np.testing.assert_array_equal(merge_phases(parts, 2, np.empty_like(x)), x)
    t = torch.from_numpy(x)
    assert torch.equal(merge_phases(split_phases(t, 2), 2, torch.empty_like(t)), t)
    assert np.array_equal(split_phases(x, 1)[0], x)
    with pytest.raises(ValueError, match=r"3 sub-images .*need 4"):
        merge_phases(parts[:3], 2, np.empty_like(x))


def test_patches_of_phase_sub_images() -> None:
    h = w = 64
    arr = np.arange(h * w, dtype=np.float32).reshape(1, h, w)
    rng = np.random.default_rng(3)
    patches = sample_patches([arr], 50, 8, rng, phase_split=2)
    assert patches.shape == (50, 1, 8, 8)
    # every patch holds pixels two apart: steps of 2 columns along a row, 2 rows down a column
    assert np.all(np.diff(patches, axis=-1) == 2) and np.all(np.diff(patches, axis=-2) == 2 * w)
    starts = patches[:, 0, 0, 0].astype(int)
    assert len({(s // w % 2, s % w % 2) for s in starts}) == 4  # all four phases drawn
    same = sample_patches([arr], 5, 8, np.random.default_rng(4))
    assert np.all(np.diff(same, axis=-1) == 1)  # no split: plain windows


def test_variance_scale_measures_what_a_low_fit_misses() -> None:
    from jumpdenoise.quality.correlation import variance_scale
    from jumpdenoise.quality.noise import NoiseVariance

    rng = np.random.default_rng(5)
    planes = [_scene(256, rng) + correlated_noise((256, 256), rng, sigma=10.0) for _ in range(2)]  # variance 100
    low = NoiseVariance(a=0.0, b=25.0, n_pixels=0)  # a fit that saw a quarter of it
    # the flattest blocks are also those whose noise happened to be small: about 15 % low
    assert 3.0 < variance_scale(planes, low) < 4.2
    assert 0.75 < variance_scale(planes, NoiseVariance(a=0.0, b=100.0, n_pixels=0)) < 1.05
    yy, xx = np.mgrid[:256, :256]
    texture = 1000 + 400 * np.sin(yy / 1.7) * np.cos(xx / 2.3)
    assert variance_scale([texture + rng.normal(0, 2, texture.shape)], low) is None  # structure everywhere


def test_sure_correlation_known_measured_and_on_phase_sub_images() -> None:
    from jumpdenoise.io.noise_model import NoiseModel, add_poisson_gaussian_noise, taps_autocorrelation
    from jumpdenoise.quality.correlation import sure_correlation

    rng = np.random.default_rng(3)
    scene = _scene(256, rng).astype(np.float32)
    correlated = NoiseModel(gain=0.6, offset=260.0, read_noise=15.0, correlation=0.5)
    fields = [add_poisson_gaussian_noise(scene, correlated, rng) for _ in range(2)]
    white = [add_poisson_gaussian_noise(scene, NoiseModel(gain=0.6, offset=260.0, read_noise=15.0), rng)
             for _ in range(2)]
    assert sure_correlation(fields, 1) == pytest.approx(0.5, abs=0.03)
    # predict runs phase sub-images: their neighbours are two apart at full resolution
    assert sure_correlation(fields, 2) == pytest.approx(taps_autocorrelation(0.5)[2], abs=0.01)
    assert sure_correlation(white, 1) == 0.0
    assert sure_correlation(white, 1, known=0.4) == 0.4  # a camera model's correlation is taken as known
    assert sure_correlation(fields, 1, known=0.0) == 0.0


def test_correlated_probe_has_unit_variance_and_each_channels_correlation() -> None:
    from jumpdenoise.quality.correlation import correlated_probe

    probe = correlated_probe(np.random.default_rng(4), (2, 512, 512), [0.0, 0.45]).astype(np.float64)
    for c, rho in enumerate((0.0, 0.45)):
        p = probe[c]
        assert p.var() == pytest.approx(1.0, abs=0.02)
        assert float(np.mean(p[:, 1:] * p[:, :-1])) == pytest.approx(rho, abs=0.01)
        assert float(np.mean(p[1:] * p[:-1])) == pytest.approx(rho, abs=0.01)
    assert set(np.unique(probe[0])) == {-1.0, 1.0}  # white: the plain random signs
