"""The private library API jumpdenoise uses (jumpdenoise.compat) exists and behaves as used.

These tests fail, never skip, when a CAREamics or torch release changes what they check: the
supported version range in ``jumpdenoise.compat.SUPPORTED`` must then change with the code.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from jumpdenoise import compat


def _unet(n_channels: int = 3, **kwargs):
    from fixtures.models import random_careamics_unet

    return random_careamics_unet(n_channels, **{"features": 8, **kwargs})


def test_installed_versions_are_supported() -> None:
    assert compat.check_version("careamics").startswith("0.3.")
    assert compat.check_version("torch") < "2.14"


@pytest.mark.parametrize("package,version,ok", [
    ("careamics", "0.3.5", True), ("careamics", "0.4.0", False), ("careamics", "0.2.9", False),
    ("torch", "2.11.0+cu128", True), ("torch", "2.14.0", False), ("torch", "2.13.1", True),
])
def test_versions_outside_the_range_fail_with_one_line(monkeypatch, package: str, version: str, ok: bool) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version)
    compat.check_version.cache_clear()
    try:
        if ok:
            assert compat.check_version(package) == version
        else:
            with pytest.raises(compat.UnsupportedVersionError) as info:
                compat.check_version(package)
            message = str(info.value)
            assert "\n" not in message and f"{package} {version}" in message and "<" in message
    finally:
        compat.check_version.cache_clear()


@pytest.mark.parametrize("which", [0, 1])
def test_careamics_masking_functions_mask_each_plane_from_its_neighbourhood(which: int) -> None:
    function = compat.careamics_masking_functions()[which]
    n, h, w = 16, 48, 48
    stack = torch.arange(n * h * w, dtype=torch.float32).reshape(n, h, w)  # a value says where it came from
    cfg = compat.n2v_manipulate_config(masked_pixel_percentage=5.0, roi_size=5)
    keyword = "patch" if which == 0 else "batch"
    masked, mask = function(**{keyword: stack.clone()}, mask_pixel_percentage=cfg.masked_pixel_percentage,
                            subpatch_size=cfg.roi_size, struct_params=None,
                            rng=torch.Generator().manual_seed(3))
    masked, mask = torch.as_tensor(masked), torch.as_tensor(mask).bool()
    assert masked.shape == mask.shape == stack.shape
    assert 0.03 < float(mask.float().mean()) < 0.07  # 5 % of the pixels
    assert torch.equal(masked[~mask], stack[~mask])  # only masked pixels change
    if which == 0:  # uniform: the value of a pixel of the same plane within the ROI
        idx = torch.nonzero(mask)
        src = masked[mask].long()
        assert torch.equal(src // (h * w), idx[:, 0])
        assert ((src % (h * w)) // w - idx[:, 1]).abs().max() <= 2
        assert ((src % w) - idx[:, 2]).abs().max() <= 2


def test_careamics_configuration_file_round_trips(tmp_path: Path) -> None:
    from careamics.config import create_advanced_n2v_config

    config = create_advanced_n2v_config(experiment_name="compat", data_type="array", axes="SCYX",
                                        patch_size=[32, 32], batch_size=4, num_epochs=1, n_channels=2)
    path = compat.save_careamics_configuration(config, tmp_path / "careamics_config.yaml")
    assert path.is_file()
    again = compat.load_careamics_configuration(path)
    assert again.algorithm_config.model_dump() == config.algorithm_config.model_dump()
    for key in ("axes", "patching", "normalization", "batch_size"):
        assert getattr(again.data_config, key) == getattr(config.data_config, key), key


def test_careamics_cover_is_an_image_file(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    array_in = rng.random((1, 2, 64, 64)).astype(np.float32)
    cover = compat.create_cover(tmp_path, array_in, array_in * 0.5)
    assert cover.is_file() and cover.parent == tmp_path
    with Image.open(cover) as image:
        assert min(image.size) > 0


@pytest.mark.parametrize("depth,n2v2,independent", [(2, False, True), (3, True, True), (2, False, False)])
def test_unet_parts_reads_the_careamics_structure(depth: int, n2v2: bool, independent: bool) -> None:
    """One reading of the UNet for both fast paths: levels, pools, N2V2's top skip, groups."""
    net = _unet(3, depth=depth, n2v2=n2v2, independent=independent)
    parts = compat.unet_parts(net)
    assert parts.depth == depth and len(parts.pools) == len(parts.ups) == len(parts.decoder_blocks) == depth
    assert all(compat.is_conv_block(b) for b in (*parts.encoder_blocks, parts.bottleneck, *parts.decoder_blocks))
    assert type(parts.pools[0]).__name__ == ("MaxBlurPool" if n2v2 else "MaxPool2d")
    assert parts.use_skip == tuple(not (n2v2 and level == depth - 1) for level in range(depth))
    assert parts.groups == (3 if independent else 1) and parts.final_conv is net.final_conv
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():  # the parts, run in order, are the network
        skips = []
        y = x
        for block, pool in zip(parts.encoder_blocks, parts.pools):
            y = block(y)
            skips.append(y)
            y = pool(y)
        y = parts.bottleneck(y)
        assert y.shape[1] == compat.conv_block_parts(parts.bottleneck).conv2.out_channels
    with pytest.raises(compat.UnsupportedNetwork, match="not a CAREamics UNet"):
        compat.unet_parts(torch.nn.Conv2d(3, 3, 1))
    broken = _unet(3, depth=2)
    broken.encoder.encoder_blocks = torch.nn.ModuleList(list(broken.encoder.encoder_blocks)[:-1])
    with pytest.raises(compat.UnsupportedNetwork, match="without pooling"):
        compat.unet_parts(broken)


def test_conv_block_parts_run_as_the_block() -> None:
    from jumpdenoise.predict.network_variants import fuse_for_inference

    net = _unet(2, depth=2)
    block = compat.unet_parts(net).encoder_blocks[0]
    parts = compat.conv_block_parts(block)
    assert parts.batch_norm1 is not None and parts.batch_norm2 is not None
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        by_parts = parts.activation(parts.batch_norm2(parts.conv2(parts.activation(parts.batch_norm1(parts.conv1(x))))))
        assert torch.allclose(by_parts, block.eval()(x), atol=1e-6)
    folded = compat.conv_block_parts(compat.unet_parts(fuse_for_inference(net)).encoder_blocks[0])
    assert folded.batch_norm1 is None and folded.batch_norm2 is None
    with pytest.raises(compat.UnsupportedNetwork, match="Conv_Block"):
        compat.conv_block_parts(torch.nn.Conv2d(2, 2, 3))


def test_batch_norm_folds_into_the_block_convolutions() -> None:
    import copy

    block = compat.unet_parts(_unet(2, depth=2)).encoder_blocks[0].eval()
    folded = copy.deepcopy(block)
    assert compat.fold_conv_block_batch_norm(folded) is True
    assert compat.fold_conv_block_batch_norm(folded) is False  # nothing left to fold
    assert compat.fold_conv_block_batch_norm(torch.nn.ReLU()) is False
    parts = compat.conv_block_parts(folded)
    assert parts.batch_norm1 is None and parts.batch_norm2 is None
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        assert torch.allclose(folded(x), block(x), rtol=1e-4, atol=1e-5)


def test_mkldnn_fused_convolution_is_conv_then_relu() -> None:
    ops = compat.mkldnn_fused_convolution()
    assert ops is not None  # the pinned torch builds have oneDNN
    conv_op, conv_add = ops
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1, groups=2)
    x = torch.randn(2, 4, 12, 12).contiguous(memory_format=torch.channels_last)
    weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)
    args = ([1, 1], [1, 1], [1, 1], 2)
    with torch.no_grad():
        expected = torch.relu(conv(x))
        got = conv_op(x, weight, conv.bias.detach(), *args, "relu", [], None)
        assert torch.allclose(got, expected, atol=1e-5)
        out = torch.randn_like(expected).contiguous(memory_format=torch.channels_last)
        want = torch.relu(out + conv(x))
        conv_add(out, x, weight, conv.bias.detach(), *args, "add", None, "relu", [], None)
        assert torch.allclose(out, want, atol=1e-5)


def test_compiled_original_sees_through_torch_compile() -> None:
    net = torch.nn.Conv2d(1, 1, 1)
    assert compat.compiled_original(net) is net
    assert compat.compiled_original(torch.compile(net)) is net  # compiling is lazy: nothing runs here


@pytest.mark.parametrize("residual", [False, True])
def test_unet_output_bias_shifts_every_output_pixel(residual: bool) -> None:
    """The private thing the output-offset correction changes: CAREamics' output convolution is
    the UNet's last operation, so its bias moves each output channel by the same amount."""
    from tests.fixtures.models import random_careamics_unet

    net = random_careamics_unet(3, residual=residual)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = net(x)
        compat.unet_output_bias(net).add_(torch.tensor([0.5, 0.0, -2.0]))
        after = net(x)
    np.testing.assert_allclose((after - before).mean(dim=(0, 2, 3)).numpy(), [0.5, 0.0, -2.0], atol=1e-5)
    np.testing.assert_allclose((after - before).std(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-5)
    with pytest.raises(compat.UnsupportedNetwork, match="final activation Sigmoid"):
        compat.unet_output_bias(random_careamics_unet(3, final_activation="Sigmoid"))
