"""The N2V training step's network and loss, replayed as CUDA graphs.

A training step of the seed UNet on a batch of 32 patches of 64 x 64 launches hundreds of
small kernels (grouped convolutions, batch norms, the decoder's channel interleaves, their
backward passes); on a fast GPU the step then waits for Python and the kernel launches,
not for arithmetic. :func:`graph_n2v_loss` captures the forward pass and the loss, and
their backward pass, with ``torch.cuda.make_graphed_callables``: each step replays two
graphs. The optimizer, the learning-rate schedule and Lightning's loop run as before (the
parameters are updated in place, so the graphs always read the current weights).

Limits (the caller falls back to eager steps otherwise): one CUDA device (no DDP hooks
inside the graphs), fixed batch shapes (jumpdenoise's patch stream yields whole batches),
N2V masks made outside the step (in the data workers), fp32 or bf16 autocast (not fp16
with a gradient scaler).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable

import torch
from careamics.losses import n2v_loss

log = logging.getLogger("jumpdenoise.train")

__all__ = ["N2VLossNet", "graph_n2v_loss", "graphs_supported", "try_graph_n2v_loss"]


class N2VLossNet(torch.nn.Module):
    """``(masked, original, mask) -> N2V loss`` of a network (the step's differentiable part).

    Parameters
    ----------
    model
        The UNet (its parameters are shared, not copied).
    channels_last
        Feed the network channels-last activations.
    """

    def __init__(self, model: torch.nn.Module, channels_last: bool = False) -> None:
        super().__init__()
        self.model = model
        self.channels_last = bool(channels_last)

    def forward(self, masked: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            masked = masked.contiguous(memory_format=torch.channels_last)
        prediction = self.model(masked)
        return n2v_loss(prediction.float(), original.float(), mask)


def graph_n2v_loss(model: torch.nn.Module, sample: tuple[torch.Tensor, ...], *, channels_last: bool,
                   bf16: bool, warmup: int = 3) -> Callable[..., torch.Tensor]:
    """Capture the network's N2V loss and its backward pass as CUDA graphs.

    Parameters
    ----------
    model
        The UNet on a CUDA device, in training mode.
    sample
        A batch ``(masked, original, mask)`` on that device: every later call must have
        the same shapes and dtypes. Its warm-up passes update batch-norm running
        statistics like ``warmup + 1`` training steps on this batch would (no weights change).
    channels_last
        Channels-last activations.
    bf16
        Capture under bf16 autocast (the ``bf16-mixed`` precision).
    warmup
        Eager passes before the capture (cuDNN picks its algorithms then).

    Returns
    -------
    callable
        ``f(masked, original, mask) -> loss`` (a scalar tensor whose ``backward()`` replays
        the backward graph and accumulates into the parameters' ``.grad``).
    """
    net = N2VLossNet(model, channels_last)
    static = tuple(t.detach().clone() for t in sample)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if bf16
                else contextlib.nullcontext())
    with autocast:
        graphed = torch.cuda.make_graphed_callables(net, static, num_warmup_iters=warmup)
    torch.cuda.synchronize()
    return graphed


def try_graph_n2v_loss(model: torch.nn.Module, sample: tuple[torch.Tensor, ...], *, channels_last: bool,
                       bf16: bool) -> Callable[..., torch.Tensor] | None:
    """:func:`graph_n2v_loss`, or ``None`` (logged) when the capture fails: train eagerly then."""
    try:
        graphed = graph_n2v_loss(model, sample, channels_last=channels_last, bf16=bf16)
    except Exception as exc:  # noqa: BLE001 - any capture failure: eager steps are still correct
        log.warning("CUDA graphs off (capture failed: %s: %s); training with eager steps",
                    type(exc).__name__, exc)
        return None
    log.info("training steps replay CUDA graphs (batch %s)", tuple(sample[0].shape))
    return graphed


def graphs_supported(device: Any, world_size: int, precision: str) -> tuple[bool, str]:
    """Whether CUDA graphs can run this training, and why not."""
    if getattr(device, "type", str(device)) != "cuda":
        return False, "not training on a CUDA device"
    if world_size != 1:
        return False, f"{world_size} processes (DDP): graphs are single-device here"
    if str(precision) not in ("32-true", "32", "bf16-mixed"):
        return False, f"precision {precision} (graphs support 32-true and bf16-mixed)"
    return True, ""
