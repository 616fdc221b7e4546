"""The structure of a CAREamics 2D UNet, read once for the fast inference paths.

:class:`~jumpdenoise.predict.cpu_fast.CpuUNet` (fused oneDNN ops on the CPU) and
:class:`~jumpdenoise.predict.gpu_fast.SplitUNet` (one dense sub-network per channel) run
the same weights differently, but read the network the same way: the encoder's
``(Conv_Block, pooling)`` pairs, the bottleneck, the decoder's ``(Upsample, Conv_Block)``
pairs, N2V2's rule for the top skip connection, the final convolution, activation and
residual connection. :func:`unet_parts` does that reading, and refuses (with
:class:`UnsupportedNetwork`) any network of another shape, so that each path can fall back
to running the network as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["UnsupportedNetwork", "UNetParts", "unet_parts", "is_conv_block"]


class UnsupportedNetwork(Exception):
    """The network is not a CAREamics 2D UNet a fast path knows how to run (use the generic path)."""


def is_conv_block(module: Any) -> bool:
    """Whether ``module`` is a CAREamics ``Conv_Block`` (conv, [norm], act, conv, [norm], act)."""
    return type(module).__name__ == "Conv_Block"


@dataclass(frozen=True)
class UNetParts:
    """The modules of a CAREamics 2D UNet, in the order they run.

    Attributes
    ----------
    encoder_blocks, pools
        The encoder's ``Conv_Block`` of each level (top level first) and the pooling
        module after it (``MaxPool2d``; N2V2's ``MaxBlurPool``).
    bottleneck
        The ``Conv_Block`` between encoder and decoder.
    ups, decoder_blocks
        The decoder's ``Upsample`` and ``Conv_Block`` of each level (deepest first).
    use_skip
        Per decoder level, whether its block reads the skip connection of the matching
        encoder level (N2V2 drops the top level's).
    final_conv, final_activation, residual
        The 1x1 output convolution, the activation after it, and whether the input is
        added to the output before that activation.
    groups
        Convolution groups (the channel count with independent channels, else 1).
    """

    encoder_blocks: tuple[Any, ...]
    pools: tuple[Any, ...]
    bottleneck: Any
    ups: tuple[torch.nn.Upsample, ...]
    decoder_blocks: tuple[Any, ...]
    use_skip: tuple[bool, ...]
    final_conv: torch.nn.Conv2d
    final_activation: Any
    residual: bool
    groups: int

    @property
    def depth(self) -> int:
        """Number of pooling levels."""
        return len(self.encoder_blocks)


def unet_parts(unet: Any) -> UNetParts:
    """Read a CAREamics 2D ``UNet`` into its :class:`UNetParts`.

    Raises
    ------
    UnsupportedNetwork
        If ``unet`` is not a CAREamics 2D UNet: no encoder/decoder, an encoder that is not
        ``(Conv_Block, pooling)`` pairs, a decoder that is not ``(Upsample, Conv_Block)``
        pairs of the encoder's depth, a final convolution that is not 2D.
    """
    enc, dec = getattr(unet, "encoder", None), getattr(unet, "decoder", None)
    fc = getattr(unet, "final_conv", None)
    if enc is None or dec is None or not hasattr(enc, "encoder_blocks") or not hasattr(dec, "decoder_blocks"):
        raise UnsupportedNetwork("not a CAREamics UNet")
    if not isinstance(fc, torch.nn.Conv2d):
        raise UnsupportedNetwork("final convolution is not 2D")
    blocks: list[Any] = []
    pools: list[Any] = []
    expect_block = True
    for mod in enc.encoder_blocks:
        if is_conv_block(mod) != expect_block:
            raise UnsupportedNetwork("encoder is not (Conv_Block, pooling) pairs")
        (blocks if expect_block else pools).append(mod)
        expect_block = not expect_block
    if not pools or not expect_block:
        raise UnsupportedNetwork("encoder block without pooling")
    mods = list(dec.decoder_blocks)
    ups, dec_blocks = mods[0::2], mods[1::2]
    if len(mods) != 2 * len(blocks) or not all(isinstance(m, torch.nn.Upsample) for m in ups) \
            or not all(is_conv_block(m) for m in dec_blocks):
        raise UnsupportedNetwork("decoder is not (Upsample, Conv_Block) pairs of the encoder's depth")
    if not is_conv_block(getattr(dec, "bottleneck", None)):
        raise UnsupportedNetwork("bottleneck is not a Conv_Block")
    n2v2 = bool(getattr(dec, "n2v2", False))
    depth = len(blocks)
    return UNetParts(
        encoder_blocks=tuple(blocks), pools=tuple(pools), bottleneck=dec.bottleneck, ups=tuple(ups),
        decoder_blocks=tuple(dec_blocks), use_skip=tuple(not (n2v2 and level >= depth - 1) for level in range(depth)),
        final_conv=fc, final_activation=unet.final_activation, residual=bool(getattr(unet, "residual", False)),
        groups=int(getattr(dec, "groups", 1)))
