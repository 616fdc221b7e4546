"""N2V masking without host synchronisation: same statistics as CAREamics' masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jumpdenoise.train.masking import UniformMasking, supports


def _batch(b: int = 16, c: int = 3, h: int = 64, w: int = 64) -> torch.Tensor:
    # every pixel holds its own flat index: a replacement value tells where it came from
    return torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)


@pytest.mark.parametrize("percent", [0.2, 1.5, 5.0])
def test_density_matches_the_percentage_like_careamics(percent: float) -> None:
    from careamics.config.algorithms.n2v_manipulation.n2v_manipulate_config import N2VManipulateConfig
    from careamics.lightning.modules.n2v_utils.n2v_manipulate import N2VManipulate

    x = torch.randn(64, 4, 64, 64)
    ours = UniformMasking(percent, 11, seed=3)
    theirs = N2VManipulate(N2VManipulateConfig(masked_pixel_percentage=percent, roi_size=11, seed=3), device="cpu")
    dens_ours = np.mean([float(ours(x)[2].float().mean()) for _ in range(10)]) * 100
    dens_theirs = np.mean([float(theirs(x)[2].float().mean()) for _ in range(10)]) * 100
    assert dens_ours == pytest.approx(percent, rel=0.1)
    assert dens_ours == pytest.approx(dens_theirs, rel=0.1)


def test_only_masked_pixels_change_and_take_a_neighbour_within_the_roi() -> None:
    x = _batch()
    b, c, h, w = x.shape
    masked, original, mask = UniformMasking(2.0, 11, seed=1)(x)
    assert original is x and masked.shape == x.shape and mask.dtype == torch.uint8
    changed = masked != x
    assert not (changed & (mask == 0)).any()  # nothing outside the mask changes
    idx = torch.nonzero(mask)
    assert len(idx) > 0
    src = masked[mask.bool()].long()  # flat index of the pixel the value came from
    sb, rem = src // (c * h * w), src % (c * h * w)
    sc, rem = rem // (h * w), rem % (h * w)
    sy, sx = rem // w, rem % w
    assert torch.equal(sb, idx[:, 0]) and torch.equal(sc, idx[:, 1])  # same patch, same channel
    dy, dx = sy - idx[:, 2], sx - idx[:, 3]
    assert dy.abs().max() <= 5 and dx.abs().max() <= 5
    # each axis moves unless clamped at the border
    inner = (idx[:, 2] >= 5) & (idx[:, 2] < h - 5) & (idx[:, 3] >= 5) & (idx[:, 3] < w - 5)
    assert (dy[inner] != 0).all() and (dx[inner] != 0).all()


def test_channels_and_patches_are_masked_independently_and_reproducibly() -> None:
    x = torch.randn(8, 4, 32, 32)
    m1 = UniformMasking(3.0, 5, seed=7)(x)[2]
    m2 = UniformMasking(3.0, 5, seed=7)(x)[2]
    assert torch.equal(m1, m2)
    assert not torch.equal(m1[:, 0], m1[:, 1]) and not torch.equal(m1[0], m1[1])
    assert not torch.equal(m1, UniformMasking(3.0, 5, seed=8)(x)[2])


def test_odd_patch_sizes_keep_draws_inside_and_bad_settings_are_refused() -> None:
    x = torch.randn(4, 2, 37, 29)
    masked, _, mask = UniformMasking(5.0, 11, seed=1)(x)
    assert mask.shape == x.shape and int(mask.sum()) > 0
    with pytest.raises(ValueError, match="masked_pixel_percentage"):
        UniformMasking(0.0)
    with pytest.raises(ValueError, match="roi_size"):
        UniformMasking(1.0, roi_size=1)
    with pytest.raises(ValueError, match=r"\(b, c, y, x\)"):
        UniformMasking(1.0)(torch.zeros(2, 8, 8))


def test_supports_only_the_uniform_strategy_without_struct_mask() -> None:
    from careamics.config.algorithms.n2v_manipulation.n2v_manipulate_config import N2VManipulateConfig

    assert supports(N2VManipulateConfig(strategy="uniform"))
    assert not supports(N2VManipulateConfig(strategy="median"))
    assert not supports(N2VManipulateConfig(strategy="uniform", struct_mask={"axis": 0, "span": 5}))


@pytest.mark.parametrize("strategy", ["uniform", "median"])
def test_loader_masking_is_careamics_masking_per_patch_and_channel(strategy: str) -> None:
    import pickle

    from careamics.config.algorithms.n2v_manipulation.n2v_manipulate_config import N2VManipulateConfig
    from careamics.lightning.modules.n2v_utils.n2v_manipulate import N2VManipulate

    from jumpdenoise.train.masking import LoaderMasking

    cfg = N2VManipulateConfig(masked_pixel_percentage=1.5, roi_size=5, seed=3, strategy=strategy)
    masking = LoaderMasking(cfg.model_dump())
    x = torch.randn(64, 3, 32, 32)
    masked, original, mask = masking(x, seed=42)
    assert original is x and masked.shape == mask.shape == x.shape and mask.dtype == torch.uint8
    assert torch.equal(masked[mask == 0], x[mask == 0])  # only masked pixels change
    changed = (masked != x) & (mask == 1)
    assert changed.float().mean() > 0.5 * mask.float().mean()  # masked pixels take other values
    # channels of one patch get their own masks
    assert not torch.equal(mask[:, 0], mask[:, 1]) and not torch.equal(mask[0], mask[1])
    # density as CAREamics' transform (per-channel calls)
    theirs = N2VManipulate(cfg, device="cpu")
    d_ours = np.mean([float(masking(x, seed=s)[2].float().mean()) for s in range(8)])
    d_theirs = np.mean([float(theirs(x)[2].float().mean()) for _ in range(8)])
    assert d_ours == pytest.approx(d_theirs, rel=0.1) and d_ours * 100 == pytest.approx(1.5, rel=0.1)
    again = pickle.loads(pickle.dumps(masking))  # what a data worker receives
    assert torch.equal(again(x, seed=42)[0], masked) and torch.equal(again(x, seed=42)[2], mask)
    assert not torch.equal(masking(x, seed=43)[2], mask)
