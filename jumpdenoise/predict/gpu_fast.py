"""Prepare a denoising network for fast inference on a GPU (other network variants, same math).

A CAREamics UNet with independent channels runs every convolution as a grouped
convolution (``groups`` = number of channels) on NCHW activations, and interleaves the
decoder's upsampled and skip tensors group by group. cuDNN is slow on grouped
convolutions in NCHW. :func:`prepare_for_gpu` offers other ways to run the same weights:

``"grouped"``
    The network as it is.
``"channels_last"``
    The same network on channels-last (NHWC) activations
    (:class:`jumpdenoise.predict.cpu_fast.ChannelsLast`).
``"split"``
    :class:`SplitUNet`: one dense sub-network (``groups=1`` convolutions) per channel,
    with the weights sliced from the grouped convolutions, each fed its own input channel,
    on channels-last activations; the decoder's interleave becomes a per-channel
    ``cat([up, skip])``; the sub-networks' outputs are concatenated back. Exact up to
    float rounding (the convolutions sum the same products, possibly in another order).

All of them take and return NCHW tensors and run on any device (CPU included), in fp32
or under autocast. Which one is fastest depends on the GPU and cuDNN version: measure
with ``benchmarks/predict.py --engine-only --engine-modes ...``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch

from jumpdenoise.compat import UNetParts, compiled_original, conv_block_parts, unet_parts
from jumpdenoise.compat import UnsupportedNetwork as _Unsupported
from jumpdenoise.predict.cpu_fast import ChannelsLast, CpuUNet

log = logging.getLogger("jumpdenoise.predict")

__all__ = ["GPU_NETWORK_VARIANTS", "prepare_for_gpu", "network_variant_of", "SplitUNet"]

#: The network variants :func:`prepare_for_gpu` knows.
GPU_NETWORK_VARIANTS = ("grouped", "channels_last", "split")

# Activations that mix channels: a sub-network of one channel cannot run them alone.
_CHANNEL_MIXING = (torch.nn.Softmax, torch.nn.Softmin, torch.nn.LogSoftmax, torch.nn.Softmax2d)


def _dense_slice(conv: Any, groups: int, g: int) -> torch.nn.Conv2d:
    """The dense (``groups=1``) convolution computing group ``g`` of a grouped convolution.

    Group ``g`` owns output rows ``g*out/groups:(g+1)*out/groups`` of the weight (shape
    ``(out, in/groups, k, k)``) and reads input channels ``g*in/groups:(g+1)*in/groups``.
    """
    if not isinstance(conv, torch.nn.Conv2d) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise _Unsupported(f"convolution {conv!r}")
    if conv.groups != groups or conv.out_channels % groups or conv.in_channels % groups:
        raise _Unsupported(f"convolution {conv!r} is not grouped in {groups} groups")
    n_out, n_in = conv.out_channels // groups, conv.in_channels // groups
    w = conv.weight.detach()[g * n_out:(g + 1) * n_out]
    dense = torch.nn.Conv2d(n_in, n_out, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                            dilation=conv.dilation, bias=conv.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        dense.weight.copy_(w)
        if conv.bias is not None:
            dense.bias.copy_(conv.bias.detach()[g * n_out:(g + 1) * n_out])
    return dense.eval()


class _DenseBlock(torch.nn.Module):
    """Group ``g`` of a CAREamics ``Conv_Block`` (batch norm folded): conv, act, conv, act.

    Dropout is left out (the identity in eval mode).
    """

    def __init__(self, block: Any, groups: int, g: int) -> None:
        super().__init__()
        parts = conv_block_parts(block)
        if parts.batch_norm1 is not None or parts.batch_norm2 is not None:
            raise _Unsupported("Conv_Block with batch norm (fold it first with fuse_for_inference)")
        act = parts.activation
        if not isinstance(act, torch.nn.Module) or isinstance(act, _CHANNEL_MIXING):
            raise _Unsupported(f"activation {act!r}")
        self.conv1 = _dense_slice(parts.conv1, groups, g)
        self.conv2 = _dense_slice(parts.conv2, groups, g)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))))


class _ChannelUNet(torch.nn.Module):
    """The dense sub-network of group ``g`` of a grouped CAREamics UNet (parsed by :class:`SplitUNet`)."""

    def __init__(self, parts: UNetParts, g: int) -> None:
        super().__init__()
        groups = parts.groups
        self.down = torch.nn.ModuleList([_DenseBlock(b, groups, g) for b in parts.encoder_blocks])
        self.pools = torch.nn.ModuleList(parts.pools)  # per-channel pooling: shared, run as it is
        self.bottleneck = _DenseBlock(parts.bottleneck, groups, g)
        self.ups = torch.nn.ModuleList(parts.ups)
        self.up_blocks = torch.nn.ModuleList([_DenseBlock(b, groups, g) for b in parts.decoder_blocks])
        self.use_skip = list(parts.use_skip)
        depth = parts.depth
        # the interleave puts, in each group, the upsampled channels first, then the skip's
        up_channels = conv_block_parts(parts.bottleneck).conv2.out_channels // groups
        for level, (block, use_skip) in enumerate(zip(self.up_blocks, self.use_skip)):
            skip_channels = self.down[depth - 1 - level].conv2.out_channels if use_skip else 0
            if block.conv1.in_channels != up_channels + skip_channels:
                raise _Unsupported(f"decoder block {level} reads {block.conv1.in_channels} channels per group, "
                                   f"expected {up_channels} upsampled + {skip_channels} skip")
            up_channels = block.conv2.out_channels
        self.final = _dense_slice(parts.final_conv, groups, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block, pool in zip(self.down, self.pools):
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.bottleneck(x)
        for up, block, use_skip, skip in zip(self.ups, self.up_blocks, self.use_skip, reversed(skips)):
            x = up(x)
            if use_skip:
                x = torch.cat([x, skip], dim=1)
            x = block(x)
        return self.final(x)


class SplitUNet(torch.nn.Module):
    """A grouped CAREamics 2D UNet run as one dense sub-network per channel, channels-last.

    Parameters
    ----------
    unet
        A CAREamics 2D ``UNet`` with independent channels (every convolution grouped with
        ``groups == in_channels > 1``), batch norm folded
        (:func:`jumpdenoise.predict.network_variants.fuse_for_inference`), in eval mode. It is not
        modified; the new module holds copies of its weights (same device and dtype).

    Raises
    ------
    _Unsupported
        Any other network (caught by :func:`prepare_for_gpu`).

    Notes
    -----
    NCHW in, contiguous NCHW out. Pooling modules (2x2 max pooling, N2V2's MaxBlurPool)
    and upsampling act on each channel alone, so they run as they are on each
    sub-network's channels. The residual connection and the final activation are applied
    to the concatenated output, as in the source network.
    """

    def __init__(self, unet: Any) -> None:
        super().__init__()
        parts = unet_parts(unet)
        groups, first = parts.groups, conv_block_parts(parts.encoder_blocks[0]).conv1
        if not isinstance(first, torch.nn.Conv2d) or groups <= 1 or first.groups != groups \
                or first.in_channels != groups:
            raise _Unsupported(f"not independent channels (groups={getattr(first, 'groups', None)}, "
                               f"in_channels={getattr(first, 'in_channels', None)})")
        if parts.final_conv.out_channels % groups:
            raise _Unsupported(f"final convolution has {parts.final_conv.out_channels} outputs for {groups} groups")
        self.groups = groups
        self.branches = torch.nn.ModuleList([_ChannelUNet(parts, g) for g in range(groups)])
        self.residual = parts.residual
        self.final_activation = parts.final_activation
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = x.shape[1] // self.groups
        # each branch reads its own channel(s), channels-last (for one channel: the NCHW slice itself)
        outs = [branch(x[:, g * step:(g + 1) * step].contiguous(memory_format=torch.channels_last))
                for g, branch in enumerate(self.branches)]
        y = torch.cat(outs, dim=1).contiguous()
        if self.residual:
            y = y + x
        return self.final_activation(y).contiguous()


def prepare_for_gpu(net: Any, variant: str) -> Any:
    """The network to run as the given variant (see the module docstring).

    Parameters
    ----------
    net
        A network in eval mode mapping ``(b, c, y, x)`` to ``(b, c, y, x)``, typically
        the output of :func:`jumpdenoise.predict.network_variants.fuse_for_inference`.
    variant
        ``"grouped"`` (``net`` itself), ``"channels_last"`` or ``"split"``. A network
        ``"split"`` cannot handle (not a CAREamics 2D UNet with independent channels,
        batch norm not folded, unknown blocks) runs ``"channels_last"`` (logged at debug
        level; :func:`network_variant_of` tells which one was used).

    Returns
    -------
    torch.nn.Module
        NCHW in, NCHW out. Except for ``"grouped"``, a new module: ``net`` is not modified.

    Raises
    ------
    ValueError
        If ``variant`` is not one of :data:`GPU_NETWORK_VARIANTS`.
    """
    if variant not in GPU_NETWORK_VARIANTS:
        raise ValueError(f"unknown network variant {variant!r} (expected one of {', '.join(GPU_NETWORK_VARIANTS)})")
    if variant == "grouped":
        return net
    if variant == "split":
        try:
            return SplitUNet(net).eval()
        except _Unsupported as exc:
            log.debug("split variant not used (%s): channels-last instead", exc)
    return ChannelsLast(copy.deepcopy(net)).eval()


def network_variant_of(net: Any) -> str:
    """How a prepared network runs: ``"split"``, ``"channels_last"``, ``"cpu_fast"`` or ``"grouped"``.

    Sees through ``torch.compile`` wrappers.
    """
    net = compiled_original(net)
    if isinstance(net, SplitUNet):
        return "split"
    if isinstance(net, ChannelsLast):
        return "channels_last"
    if isinstance(net, CpuUNet):
        return "cpu_fast"
    return "grouped"
