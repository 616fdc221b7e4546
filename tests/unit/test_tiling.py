"""Tile plans, blending weights and stitching; the engine's tiled vs whole-field equality."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from jumpdenoise.compute.tiling import TilePlan, finish_blend, pad_to, plan_axis, plan_tiles, ramp_weights, stitch


@pytest.mark.parametrize("length,valid,tile,overlap", [(1088, 1080, 256, 52), (500, 497, 256, 48),
                                                       (300, 300, 256, 48), (64, 61, 256, 48), (96, 96, 32, 8)])
def test_axis_plan_covers_with_margins(length: int, valid: int, tile: int, overlap: int) -> None:
    ax = plan_axis(length, valid, tile, overlap)
    t = min(tile, length)
    assert ax.starts[0] == 0 and ax.starts[-1] + t == length
    # the crop regions partition [0, valid) in order
    covered = np.zeros(valid, int)
    for lo, hi in zip(ax.lo, ax.hi):
        covered[lo:hi] += 1
    assert (covered == 1).all()
    # every kept pixel is at least overlap/2 away from an edge shared with a neighbour
    for i, (s, lo, hi) in enumerate(zip(ax.starts, ax.lo, ax.hi)):
        if hi <= lo:
            continue
        if i > 0:
            assert lo - s >= overlap // 2
        if i < len(ax.starts) - 1:
            assert s + t - hi >= overlap // 2


def test_tiles_start_on_the_stride_and_plan_pads() -> None:
    plan = plan_tiles((1080, 1075), tile_size=250, overlap=50, stride=8)
    assert plan.padded_yx == (1080, 1080) and plan.tile_yx == (256, 256) and plan.overlap == 56
    assert all(t.y0 % 8 == 0 and t.x0 % 8 == 0 for t in plan.tiles)
    whole = plan_tiles((1080, 1075), tile_size=None, overlap=50, stride=8)
    assert whole.whole and len(whole.tiles) == 1
    with pytest.raises(ValueError, match="smaller than the tile"):
        plan_tiles((512, 512), tile_size=64, overlap=64, stride=4)


def test_blend_weights_are_a_partition_of_unity() -> None:
    ax = plan_axis(400, 400, 128, 48)
    total = np.zeros(400)
    for i, s in enumerate(ax.starts):
        total[s:s + 128] += ramp_weights(ax, i, guard=10, overlap=48)
    assert total.min() > 0.0
    # where exactly two tiles overlap by exactly `overlap` pixels, the weights sum to 1
    assert np.allclose(total[:ax.starts[-1]], 1.0)


def test_pad_to_reflects_and_keeps_the_image() -> None:
    img = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    out = pad_to(img, (8, 8))
    assert out.shape == (2, 8, 8)
    assert np.array_equal(out[:, :5, :7], img)
    assert np.array_equal(out[:, 5, :7], img[:, 3])  # reflection without repeating the edge


def predict_tiled(fn, image: np.ndarray, plan: TilePlan, batch_size: int = 8) -> np.ndarray:
    """Predict ``image`` (``(c, y, x)``) tile by tile with ``fn`` (the engine does the same on the device)."""
    padded = pad_to(image.astype(np.float32, copy=False), plan.padded_yx)
    ty, tx = plan.tile_yx
    c = image.shape[0]
    crop = plan.mode == "crop"
    out = np.zeros((c, *(plan.shape_yx if crop else plan.padded_yx)), np.float32)
    acc = None if crop else np.zeros((1, *plan.padded_yx), np.float32)
    tiles = list(plan.tiles)
    for i in range(0, len(tiles), batch_size):
        chunk = tiles[i:i + batch_size]
        batch = np.stack([padded[:, t.y0:t.y0 + ty, t.x0:t.x0 + tx] for t in chunk])
        pred = np.asarray(fn(batch), dtype=np.float32)
        weights = None if crop else [plan.weights(t)[None] for t in chunk]
        stitch(plan, out, list(pred), chunk, acc, weights)
    return out if crop else finish_blend(plan, out, acc)


@pytest.mark.parametrize("mode", ["crop", "blend"])
@pytest.mark.parametrize("shape", [(150, 203), (64, 64), (97, 250)])
def test_stitched_local_filter_equals_whole_image(mode: str, shape: tuple[int, int]) -> None:
    """A zero-padded box filter of radius 5 stands in for a network with receptive field 5."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, *shape)).astype(np.float32)
    radius = 5

    def net(batch: np.ndarray) -> np.ndarray:
        return uniform_filter(batch, size=(1, 1, 2 * radius + 1, 2 * radius + 1), mode="constant")

    plan = plan_tiles(shape, tile_size=48, overlap=2 * radius + 8, stride=4, mode=mode, guard=radius)
    whole = net(pad_to(image, plan.padded_yx)[None])[0][:, :shape[0], :shape[1]]
    tiled = predict_tiled(net, image, plan, batch_size=3)
    assert tiled.shape == image.shape
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


def _random_unet_model(n_channels: int = 2, depth: int = 2, n2v2: bool = False):
    import torch
    from careamics.models.unet import UNet

    from jumpdenoise.predict.model import LoadedModel

    torch.manual_seed(0)
    net = UNet(conv_dims=2, num_classes=n_channels, in_channels=n_channels, depth=depth, num_channels_init=8,
               n2v2=n2v2)
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return LoadedModel(module=net.eval(), channels=[f"c{i}" for i in range(n_channels)],
                       mean=np.full(n_channels, 100.0), std=np.full(n_channels, 10.0), careamics_config={},
                       source="random-unet", stride=2 ** depth)


@pytest.mark.parametrize("mode", ["crop", "blend"])
def test_engine_tiled_equals_untiled(mode: str) -> None:
    from jumpdenoise.predict.arrays import denoise_array

    model = _random_unet_model()
    assert model.receptive_field >= 20  # depth-2 UNet: ~25 px
    image = np.random.default_rng(1).normal(100, 10, (2, 157, 203)).astype(np.float32)
    whole = denoise_array(model, image, tile_size=None)
    tiled = denoise_array(model, image, tile_size=96, overlap=None, mode=mode, batch_size=3)
    assert whole.shape == image.shape and whole.dtype == np.float32
    assert np.abs(whole - image).max() > 1.0  # the network does something
    scale = np.abs(whole).max()
    assert np.abs(tiled - whole).max() <= 1e-4 * scale


def test_engine_is_deterministic_and_rejects_wrong_channel_count() -> None:
    from jumpdenoise.errors import ModelError
    from jumpdenoise.predict.arrays import denoise_array

    model = _random_unet_model()
    image = np.random.default_rng(2).normal(100, 10, (2, 80, 90)).astype(np.float32)
    a = denoise_array(model, image, tile_size=64, overlap=None, batch_size=4)
    b = denoise_array(model, image, tile_size=64, overlap=None, batch_size=4)
    assert np.array_equal(a, b)
    with pytest.raises(ModelError, match="2 channel"):
        denoise_array(model, image[:1], tile_size=None)


def test_tta_of_identity_model_returns_input() -> None:
    import torch

    from jumpdenoise.predict.arrays import denoise_array
    from jumpdenoise.predict.model import LoadedModel

    model = LoadedModel(module=torch.nn.Identity(), channels=["a", "b"], mean=np.array([50.0, 60.0]),
                        std=np.array([5.0, 7.0]), careamics_config={}, source="identity", stride=1)
    image = np.random.default_rng(3).normal(55, 6, (2, 37, 52)).astype(np.float32)
    for tile in (None, 16):
        out = denoise_array(model, image, tile_size=tile, overlap=4, tta=True)
        np.testing.assert_allclose(out, image, rtol=1e-6, atol=1e-4)
    # a non-symmetric network: TTA is the mean over the 8 transformed predictions
    shift = torch.nn.Conv2d(2, 2, 3, padding=1, bias=False, groups=2)
    with torch.no_grad():
        shift.weight.zero_()
        shift.weight[:, 0, 1, 2] = 1.0  # output(x) = input(x + 1)
    model.module = shift.eval()
    out = denoise_array(model, image, tile_size=None, tta=True)
    assert not np.allclose(out, denoise_array(model, image, tile_size=None, tta=False))
