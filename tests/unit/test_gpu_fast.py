"""Network variants for the GPU (jumpdenoise.predict.gpu_fast), checked on the CPU: every variant
gives the CAREamics network's output within float rounding, through the Predictor too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import torch

from jumpdenoise.predict.engine import Predictor  # noqa: E402
from jumpdenoise.predict.gpu_fast import SplitUNet, network_variant_of, prepare_for_gpu  # noqa: E402
from jumpdenoise.predict.model import LoadedModel  # noqa: E402
from jumpdenoise.predict.network_variants import (  # noqa: E402
    CUDA_AUTO_VARIANT, fuse_for_inference, resolve_network_variant,
)


def careamics_unet(n_channels: int = 4, *, features: int = 32, **kwargs: Any):
    """A CAREamics UNet in eval mode with random weights and batch-norm statistics (32 features)."""
    from fixtures.models import random_careamics_unet

    return random_careamics_unet(n_channels, features=features, **kwargs)


def loaded(net, n_channels: int = 4, stride: int = 4) -> LoadedModel:
    return LoadedModel(module=net, channels=[f"c{i}" for i in range(n_channels)], mean=np.full(n_channels, 100.0),
                       std=np.full(n_channels, 10.0), careamics_config={}, source=Path("test-unet"), stride=stride)


def relative_error(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


VARIANTS = {
    "seed": dict(),  # depth 2, 32 features, 4 independent channels
    "n2v2": dict(n2v2=True),  # MaxBlurPool, no top-level skip connection
    "residual-sigmoid": dict(n_channels=2, depth=3, features=8, residual=True, final_activation="Sigmoid"),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_equal_the_fused_network(name: str) -> None:
    variant = VARIANTS[name]
    c, depth = variant.get("n_channels", 4), variant.get("depth", 2)
    net = careamics_unet(**variant)
    fused = fuse_for_inference(net)
    x = torch.randn(2, c, 48, 40)  # a batch of 2, non-square
    with torch.inference_mode():
        ref = fused(x)
        for variant in ("channels_last", "split"):
            prepared = prepare_for_gpu(fused, variant)
            assert network_variant_of(prepared) == variant
            got = prepared(x)
            assert got.shape == ref.shape and got.dtype == torch.float32 and got.is_contiguous()
            assert relative_error(got, ref) < 1e-5, variant
        assert torch.equal(fused(x), ref)  # the source network is untouched

    # through the Predictor: a field not a multiple of the stride, padded as the engine pads
    lm = loaded(net, c, stride=2 ** depth)
    field = torch.from_numpy(np.random.default_rng(1).normal(0, 1, (c, 70, 90)).astype(np.float32))
    plain = Predictor(lm, network_variant="grouped", overlap=0)  # whole fields (overlap 0: no receptive-field probe)
    assert plain.variant_used == "grouped"
    expected = plain.predict_normalized(field)
    for variant in ("channels_last", "split"):
        predictor = Predictor(lm, network_variant=variant, overlap=0)
        assert predictor.variant_used == variant
        got = predictor.predict_normalized(field)
        assert got.shape == (c, 70, 90)
        assert relative_error(got, expected) < 1e-5, variant


def test_split_runs_under_bf16_autocast_and_matches_fp32_closely() -> None:
    net = fuse_for_inference(careamics_unet())
    split = prepare_for_gpu(net, "split")
    assert isinstance(split, SplitUNet) and len(split.branches) == 4
    x = torch.randn(1, 4, 64, 64)
    with torch.inference_mode():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = split(x)
    assert low.shape == ref.shape and torch.isfinite(low).all()
    assert relative_error(low.float(), ref) < 5e-2  # bf16 rounding, not another function


def test_split_branches_hold_the_groups_weights() -> None:
    net = fuse_for_inference(careamics_unet(features=8))
    split = SplitUNet(net)
    conv = net.encoder.encoder_blocks[0].conv2  # grouped: weight (4*8, 8, 3, 3)
    for g, branch in enumerate(split.branches):
        dense = branch.down[0].conv2
        assert dense.groups == 1 and dense.in_channels == 8 and dense.out_channels == 8
        assert torch.equal(dense.weight, conv.weight[g * 8:(g + 1) * 8])
        assert torch.equal(dense.bias, conv.bias[g * 8:(g + 1) * 8])
    # one channel's output depends on that channel's input only
    x = torch.randn(1, 4, 32, 32)
    y = x.clone()
    y[:, 2] += 1.0
    with torch.inference_mode():
        a, b = split(x), split(y)
    assert torch.equal(a[:, [0, 1, 3]], b[:, [0, 1, 3]]) and not torch.equal(a[:, 2], b[:, 2])


@pytest.mark.parametrize("case", ["not-independent", "batch-norm-not-folded", "other-network"])
def test_unsupported_networks_fall_back_to_channels_last(case: str) -> None:
    if case == "not-independent":
        net = fuse_for_inference(careamics_unet(features=8, independent=False))
    elif case == "batch-norm-not-folded":
        net = careamics_unet(features=8)
    else:
        torch.manual_seed(2)
        net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1, groups=4), torch.nn.ReLU(),
                                  torch.nn.Conv2d(8, 4, 3, padding=1, groups=4)).eval()
    prepared = prepare_for_gpu(net, "split")
    assert network_variant_of(prepared) == "channels_last"
    x = torch.randn(1, 4, 32, 24)
    with torch.inference_mode():
        assert relative_error(prepared(x), net(x)) < 1e-5


def test_predictor_settings_and_variant_choice() -> None:
    lm = loaded(careamics_unet(features=8))
    lm._receptive_field = 20  # not probed (not what this test is about)
    default = Predictor(lm)
    assert default.settings()["network_variant"] == "auto" and default.settings()["autotune"] is False
    assert default.variant_used == "cpu_fast"  # today's CPU behaviour
    assert Predictor(lm, bf16=True).variant_used == "grouped"
    tuned = Predictor(lm, network_variant="split", autotune=True)
    assert tuned.variant_used == "split" and isinstance(tuned.net, SplitUNet)
    assert tuned.settings()["network_variant"] == "split" and tuned.settings()["autotune"] is True
    assert resolve_network_variant("auto", "cuda") == CUDA_AUTO_VARIANT["fp32"] == "grouped"
    assert resolve_network_variant("auto", "cuda", bf16=True) == CUDA_AUTO_VARIANT["bf16"] == "split"
    assert resolve_network_variant("auto", "cpu", cpu_fast=False) == "grouped"
    assert resolve_network_variant("channels_last", "cpu") == "channels_last"
    with pytest.raises(ValueError, match="'nhwc'"):
        Predictor(lm, network_variant="nhwc")
    with pytest.raises(ValueError, match="'nhwc'"):
        prepare_for_gpu(lm.module, "nhwc")


def test_config_accepts_variants_and_rejects_unknown_ones() -> None:
    from pydantic import ValidationError

    from jumpdenoise.config.predict import PredictConfig

    ex = PredictConfig(experimental={"network_variant": "split", "autotune": True}).experimental
    assert ex.network_variant == "split" and ex.autotune is True
    assert PredictConfig().experimental.network_variant == "auto" and PredictConfig().experimental.autotune is False
    with pytest.raises(ValidationError) as info:
        PredictConfig(experimental={"network_variant": "nhwc"})
    assert "network_variant" in str(info.value) and "nhwc" in str(info.value)
