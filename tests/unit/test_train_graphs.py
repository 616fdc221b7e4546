"""The training step's loss as CUDA graphs: same loss and gradients as the eager step."""

from __future__ import annotations

import pytest
import torch

from jumpdenoise.train.graphs import N2VLossNet, graphs_supported


def _unet(channels: int = 2):
    from careamics.models.unet import UNet

    torch.manual_seed(0)
    return UNet(conv_dims=2, num_classes=channels, in_channels=channels, depth=2, num_channels_init=8,
                independent_channels=True)


def _batch(device: str, channels: int = 2):
    from jumpdenoise.compat import n2v_manipulate_config
    from jumpdenoise.train.masking import LoaderMasking

    x = torch.randn(4, channels, 32, 32, generator=torch.Generator().manual_seed(1))
    masked, original, mask = LoaderMasking(n2v_manipulate_config(masked_pixel_percentage=3.0).model_dump())(x, 5)
    return tuple(t.to(device) for t in (masked, original, mask))


def _eager(model, batch):
    from careamics.losses import n2v_loss

    return n2v_loss(model(batch[0]).float(), batch[1].float(), batch[2])


@pytest.mark.parametrize("channels_last", [False, True])
def test_loss_net_is_the_eager_n2v_loss(channels_last: bool) -> None:
    model = _unet()
    batch = _batch("cpu")
    ref = _eager(model, batch)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    got = N2VLossNet(model, channels_last)(*batch)
    assert float(got) > 0 and torch.allclose(got, ref, rtol=1e-5)


def test_graphs_are_refused_where_they_cannot_run() -> None:
    assert graphs_supported(torch.device("cpu"), 1, "32-true")[0] is False
    ok, why = graphs_supported(torch.device("cuda", 0), 2, "bf16-mixed")
    assert not ok and "DDP" in why
    assert "16-mixed" in graphs_supported(torch.device("cuda", 0), 1, "16-mixed")[1]
    assert graphs_supported(torch.device("cuda", 0), 1, "bf16-mixed") == (True, "")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("bf16", [False, True])
def test_graphed_loss_and_gradients_match_eager_steps(bf16: bool) -> None:
    from jumpdenoise.train.graphs import graph_n2v_loss

    # fp32 means fp32 here: TF32 convolutions (cuDNN's default) differ by ~1e-2 after batch norm's backward
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        _compare_graphed_and_eager(graph_n2v_loss, bf16)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


def _compare_graphed_and_eager(graph_n2v_loss, bf16: bool) -> None:
    eager_model, graph_model = _unet().cuda(), _unet().cuda()
    graph_model.load_state_dict(eager_model.state_dict())
    batches = [_batch("cuda") for _ in range(2)]
    # same layout on both sides: the comparison is about the graphs, not about cuDNN's algorithms
    graphed = graph_n2v_loss(graph_model, batches[0], channels_last=False, bf16=bf16)
    eager_model.load_state_dict(graph_model.state_dict())  # the capture's warm-up moved batch-norm stats
    tol = 3e-2 if bf16 else 1e-4
    for batch in batches:
        for m in (eager_model, graph_model):
            m.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            ref = _eager(eager_model, batch)
        ref.backward()
        got = graphed(*batch)
        got.backward()
        assert torch.allclose(got, ref, rtol=tol)
        # all gradients together (conv biases before a batch norm get ~0 gradients: compare globally)
        a = torch.cat([p.grad.flatten() for p in eager_model.parameters()])
        b = torch.cat([p.grad.flatten() for p in graph_model.parameters()])
        assert float((a - b).norm() / a.norm()) < tol


@pytest.mark.parametrize("fused", [True, False])
def test_adam_is_fused_on_cuda_unless_switched_off(fused: bool) -> None:
    from jumpdenoise.config.train import TrainConfig
    from jumpdenoise.train.careamics_config import build_careamics_config
    from jumpdenoise.train.module import JumpN2VModule

    tc = TrainConfig(model={"num_channels_init": 8}, experimental={"fused_adam": fused})
    module = JumpN2VModule(build_careamics_config(tc, n_channels=1, mean=[0.0], std=[1.0]).algorithm_config)
    module.fused_adam = tc.experimental.fused_adam
    cpu_group = module.configure_optimizers()["optimizer"].param_groups[0]
    assert not cpu_group.get("fused")  # the CPU keeps CAREamics' Adam either way
    module._device = torch.device("cuda", 0)  # where the module would train; the step itself is not run here
    group = module.configure_optimizers()["optimizer"].param_groups[0]
    assert bool(group.get("fused")) is fused
    assert group.get("foreach") is (False if fused else None)  # fused replaces foreach; else CAREamics' default
