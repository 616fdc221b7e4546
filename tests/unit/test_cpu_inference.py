"""CPU inference path (jumpdenoise.predict.cpu_fast): same output as the CAREamics network,
for the UNet variants CAREamics builds, and bit-identical across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import torch

from jumpdenoise.predict.cpu_fast import ChannelsLast, CpuUNet, fused_cpu_supported, prepare_for_cpu  # noqa: E402
from jumpdenoise.predict.network_variants import fuse_for_inference  # noqa: E402

pytestmark = pytest.mark.skipif(not fused_cpu_supported(), reason="torch built without oneDNN")


def careamics_unet(n_channels: int = 4, *, features: int = 8, **kwargs: Any):
    """A CAREamics UNet in eval mode with random weights and batch-norm statistics (8 features)."""
    from fixtures.models import random_careamics_unet

    return random_careamics_unet(n_channels, features=features, **kwargs)


def relative_error(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("variant", [
    dict(),  # the seed model's shape: independent channels (grouped convolutions)
    dict(independent=False),  # one network over all channels (groups=1)
    dict(n2v2=True),  # MaxBlurPool and no top-level skip connection
    dict(depth=3, residual=True, n_channels=2),
    dict(n_channels=1, depth=1),
])
def test_fast_path_equals_the_careamics_network(variant: dict) -> None:
    net = careamics_unet(**variant)
    c = variant.get("n_channels", 4)
    x = torch.randn(2, c, 48, 40)  # a batch of 2, non-square, a multiple of the stride
    fast = prepare_for_cpu(fuse_for_inference(net))
    assert isinstance(fast, CpuUNet)
    with torch.inference_mode():
        ref, got = net(x), fast(x)
    assert got.shape == ref.shape and got.dtype == torch.float32 and got.is_contiguous()
    assert relative_error(got, ref) < 1e-5
    # the fused network is a copy: the source is untouched and still gives the reference
    with torch.inference_mode():
        assert torch.equal(net(x), ref)


def test_other_networks_run_channels_last_with_the_same_output() -> None:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 2, 3, padding=1)).eval()
    x = torch.randn(1, 2, 32, 32)
    fast = prepare_for_cpu(net)
    assert isinstance(fast, ChannelsLast)
    with torch.inference_mode():
        assert relative_error(fast(x), net(x)) < 1e-5
    assert net[0].weight.is_contiguous()  # the given module is not converted in place


def test_unfolded_batch_norm_falls_back_to_channels_last() -> None:
    net = careamics_unet()
    fast = prepare_for_cpu(net)  # batch norms not folded: not the fused path, still correct
    assert isinstance(fast, ChannelsLast)
    x = torch.randn(1, 4, 32, 32)
    with torch.inference_mode():
        assert relative_error(fast(x), net(x)) < 1e-5


def test_predictor_uses_the_fast_path_on_cpu_and_matches_the_plain_network() -> None:
    from jumpdenoise.predict.engine import Predictor
    from pathlib import Path

    from jumpdenoise.predict.model import LoadedModel

    lm = LoadedModel(module=careamics_unet(features=8), channels=["A", "B", "C", "D"], mean=np.full(4, 100.0),
                     std=np.full(4, 10.0), careamics_config={}, source=Path("test-unet"), stride=4)
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (4, 70, 90)).astype(np.float32)  # not a multiple of the stride
    fast = Predictor(lm)
    plain = Predictor(lm, cpu_fast=False)
    tiled = Predictor(lm, tile_size=64, overlap=56, batch_size=3)
    assert isinstance(fast.net, CpuUNet) and not isinstance(plain.net, (CpuUNet, ChannelsLast))
    a, b, t = fast.denoise(image), plain.denoise(image), tiled.denoise(image)
    scale = np.abs(b - 100).max()
    assert np.abs(a - b).max() / scale < 1e-4
    assert np.abs(t - a).max() / scale < 1e-4
    assert not isinstance(Predictor(lm, bf16=True).net, CpuUNet)  # bf16 autocast keeps the plain network


_CHILD = textwrap.dedent("""
    import sys, torch, numpy as np
    sys.path[:0] = [{tests!r}, {fixtures_root!r}]
    from test_cpu_inference import careamics_unet
    from jumpdenoise.compute.threads import pinned_torch_threads
    from jumpdenoise.predict.cpu_fast import prepare_for_cpu
    from jumpdenoise.predict.network_variants import fuse_for_inference
    net = prepare_for_cpu(fuse_for_inference(careamics_unet(features=16)))
    x = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 4, 96, 128)).astype(np.float32))
    with torch.inference_mode(), pinned_torch_threads():
        sys.stdout.write(net(x).numpy().tobytes().hex())
""")


def test_output_is_bit_identical_in_two_processes() -> None:
    code = _CHILD.format(tests=str(Path(__file__).parent), fixtures_root=str(Path(__file__).parents[1]))
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert len(outs[0]) == 2 * 4 * 96 * 128 * 4
    assert outs[0] == outs[1]
