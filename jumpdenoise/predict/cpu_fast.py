"""Prepare a denoising network for fast fp32 inference on the CPU.

PyTorch runs a CAREamics UNet on the CPU with oneDNN convolutions, but in its default
memory format (NCHW) and with every ReLU, channel interleave and pooling as a separate
pass over memory. :func:`prepare_for_cpu` keeps the same weights and the same arithmetic
and changes how it is run:

- channels-last (NHWC) activations throughout: oneDNN's grouped 3x3 convolutions are
  about 1.5x faster on them than on NCHW;
- each convolution runs with its ReLU fused (oneDNN post-op,
  ``torch.ops.mkldnn._convolution_pointwise``, reached through :mod:`jumpdenoise.compat`),
  so no separate pass for the activation;
- no channel interleave (concatenation) of the decoder's skip connections: the first
  convolution of a decoder block is split along its input channels,
  ``conv(interleave(up, skip)) = conv(up, W_up) + conv(skip, W_skip)``, and the second
  half is accumulated into the first's output with the ReLU fused (oneDNN binary
  post-op);
- 2x2 max pooling as an element-wise maximum of four strided views.

The output equals the eager network's within float rounding (about 1e-6 relative; the
sums of a split convolution are associated differently). It is deterministic for a given
input shape and torch thread count, like any oneDNN fp32 forward pass.

Only CAREamics 2D UNets (batch norm already folded by
:func:`jumpdenoise.predict.network_variants.fuse_for_inference`, ReLU activations) get the fused
path; any other network is only converted to channels-last (:class:`ChannelsLast`).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch

from jumpdenoise.compat import UnsupportedNetwork as _Unsupported
from jumpdenoise.compat import conv_block_parts, mkldnn_fused_convolution, unet_parts

log = logging.getLogger("jumpdenoise.predict")

__all__ = ["prepare_for_cpu", "fused_cpu_supported", "ChannelsLast", "CpuUNet"]


def fused_cpu_supported() -> bool:
    """Whether this torch build has the oneDNN fused convolution ops used by :class:`CpuUNet`."""
    return mkldnn_fused_convolution() is not None


class ChannelsLast(torch.nn.Module):
    """Run a network on channels-last activations; NCHW in, contiguous NCHW out."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last)).contiguous()


class _Conv(torch.nn.Module):
    """A 2D convolution (zero padding) with an optional fused ReLU, run by oneDNN."""

    def __init__(self, conv: torch.nn.Conv2d, relu: bool, weight: torch.Tensor | None = None,
                 bias: bool = True) -> None:
        super().__init__()
        if not isinstance(conv, torch.nn.Conv2d) or conv.padding_mode != "zeros" \
                or isinstance(conv.padding, str):
            raise _Unsupported(f"convolution {conv!r}")
        w = conv.weight.detach() if weight is None else weight
        self.register_buffer("weight", w.contiguous(memory_format=torch.channels_last))
        b = conv.bias.detach().clone() if (bias and conv.bias is not None) else None
        self.register_buffer("bias", b)
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = int(conv.groups)
        self.attr = "relu" if relu else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, _ = mkldnn_fused_convolution()
        return conv(x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups, self.attr,
                    [], None)

    def accumulate(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``out = act(out + conv(x))`` in place (oneDNN binary post-op)."""
        _, conv_add = mkldnn_fused_convolution()
        return conv_add(
            out, x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups, "add", None,
            None if self.attr == "none" else self.attr, [], None)


class _Block(torch.nn.Module):
    """A CAREamics ``Conv_Block`` (batch norm folded): conv, act, conv, act.

    With ``up_channels`` (a decoder block), its input is the interleave, group by group,
    of the upsampled tensor (``up_channels`` channels) and the skip connection, and the
    first convolution is split along its input channels into the two parts, so that the
    interleave is never materialised. Dropout is left out (the identity in eval mode).
    """

    def __init__(self, block: Any, up_channels: int | None = None) -> None:
        super().__init__()
        parts = conv_block_parts(block)
        if parts.batch_norm1 is not None or parts.batch_norm2 is not None:
            raise _Unsupported("Conv_Block with batch norm (fold it first)")
        act = parts.activation
        relu = isinstance(act, torch.nn.ReLU)
        if not relu and not isinstance(act, torch.nn.Identity):
            raise _Unsupported(f"activation {act!r}")
        self.split = up_channels is not None
        c1 = parts.conv1
        if self.split:
            g = int(c1.groups)
            if up_channels % g or (c1.in_channels - up_channels) % g or up_channels >= c1.in_channels:
                raise _Unsupported("decoder block channels do not split into groups")
            m = up_channels // g
            w = c1.weight.detach()
            self.conv1 = _Conv(c1, relu=False, weight=w[:, :m], bias=False)
            self.conv1_skip = _Conv(c1, relu, weight=w[:, m:])
        else:
            self.conv1 = _Conv(c1, relu)
        self.conv2 = _Conv(parts.conv2, relu)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.split:
            x = self.conv1_skip.accumulate(self.conv1(x), skip)
        else:
            x = self.conv1(x)
        return self.conv2(x)


def _maxpool2(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    a = torch.maximum(x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2])
    b = torch.maximum(x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2])
    return torch.maximum(a, b, out=a)


def _is_2x2(pool: torch.nn.MaxPool2d) -> bool:
    def pair(v: Any) -> tuple:
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    return pair(pool.kernel_size) == (2, 2) and pair(pool.stride) == (2, 2) and pair(pool.padding) == (0, 0) \
        and pair(pool.dilation) == (1, 1) and not pool.ceil_mode


class CpuUNet(torch.nn.Module):
    """A CAREamics 2D UNet run with fused oneDNN ops on channels-last activations.

    NCHW in, contiguous NCHW out; same weights and arithmetic as the source network.
    """

    def __init__(self, unet: Any) -> None:
        super().__init__()
        parts = unet_parts(unet)
        self.down = torch.nn.ModuleList([_Block(b) for b in parts.encoder_blocks])
        # after each encoder block: "max2" (fast 2x2 max) or the module itself (e.g. N2V2's MaxBlurPool)
        self.pools: list[Any] = ["max2" if isinstance(p, torch.nn.MaxPool2d) and _is_2x2(p) else p
                                 for p in parts.pools]
        self.pool_modules = torch.nn.ModuleList([p for p in self.pools if isinstance(p, torch.nn.Module)])
        self.bottleneck = _Block(parts.bottleneck)
        self.ups = torch.nn.ModuleList(parts.ups)
        self.up_blocks = torch.nn.ModuleList()
        self.use_skip = list(parts.use_skip)
        channels = int(conv_block_parts(parts.bottleneck).conv2.out_channels)
        for block, use_skip in zip(parts.decoder_blocks, parts.use_skip):
            self.up_blocks.append(_Block(block, up_channels=channels if use_skip else None))
            channels = int(conv_block_parts(block).conv2.out_channels)
        self.final = _Conv(parts.final_conv, relu=False)
        self.final_activation = parts.final_activation
        self.residual = parts.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp = x
        x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for block, pool in zip(self.down, self.pools):
            x = block(x)
            skips.append(x)
            x = _maxpool2(x) if isinstance(pool, str) else pool(x)
        x = self.bottleneck(x)
        for up, block, use_skip, skip in zip(self.ups, self.up_blocks, self.use_skip, reversed(skips)):
            x = up(x)
            x = block(x, skip) if use_skip else block(x)
        x = self.final(x)
        if self.residual:
            x = x + inp
        return self.final_activation(x).contiguous()


def prepare_for_cpu(module: Any) -> Any:
    """The network to run on the CPU: :class:`CpuUNet` when possible, else channels-last.

    Parameters
    ----------
    module
        A network in eval mode mapping ``(b, c, y, x)`` to ``(b, c, y, x)``, typically
        the output of :func:`jumpdenoise.predict.network_variants.fuse_for_inference`.

    Returns
    -------
    torch.nn.Module
        A new module (the given one is left as it is) taking and returning NCHW tensors.
    """
    if fused_cpu_supported():
        try:
            return CpuUNet(module).eval()
        except _Unsupported as exc:
            log.debug("CPU fast path not used (%s): channels-last only", exc)
    return ChannelsLast(copy.deepcopy(module)).eval()
