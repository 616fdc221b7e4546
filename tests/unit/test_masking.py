"""N2V masking in the data workers (jumpdenoise.train.masking): CAREamics' masking, per patch and channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.mark.parametrize("strategy", ["uniform", "median"])
def test_loader_masking_is_careamics_masking_per_patch_and_channel(strategy: str) -> None:
    import pickle

    from careamics.lightning.modules.n2v_utils.n2v_manipulate import N2VManipulate

    from jumpdenoise.compat import n2v_manipulate_config
    from jumpdenoise.train.masking import LoaderMasking

    cfg = n2v_manipulate_config(masked_pixel_percentage=1.5, roi_size=5, seed=3, strategy=strategy)
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


def test_sparse_form_rebuilds_the_dense_masking() -> None:
    from jumpdenoise.compat import n2v_manipulate_config
    from jumpdenoise.train.masking import LoaderMasking, densify

    masking = LoaderMasking(n2v_manipulate_config(masked_pixel_percentage=3.0, roi_size=5).model_dump())
    x = torch.randn(8, 2, 32, 32)
    original, index, values = masking.sparse(x, seed=7)
    assert original is x and index.dtype == torch.int64 and values.shape == index.shape
    for a, b in zip(densify(original, index, values), masking(x, seed=7)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"\(b, c, \.\.\.\)"):
        masking(torch.zeros(8), seed=1)
