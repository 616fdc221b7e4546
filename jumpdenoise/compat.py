"""Every use of a library's private API, in one place, checked against the versions it was written for.

jumpdenoise relies on a few things CAREamics and torch do not export: CAREamics' N2V masking
functions, its configuration file I/O, its BMZ cover maker and loader, the module structure of its UNet,
and torch's oneDNN fused convolution op and ``torch.compile`` wrapper. Each accessor below
first checks that the installed library is a version this code was written for
(:data:`SUPPORTED`), and raises :class:`UnsupportedVersionError` (one line naming the
package, its version and the supported range) otherwise, rather than failing somewhere deep
inside training or prediction. ``tests/unit/test_compat.py`` checks that each private thing
exists and behaves as used.

Importing this module imports neither torch nor CAREamics.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jumpdenoise.errors import JumpDenoiseError

__all__ = [
    "SUPPORTED", "ConvBlockParts", "UNetParts", "UnsupportedNetwork", "UnsupportedVersionError",
    "careamics_masking_functions", "check_version", "compiled_original", "conv_block_parts", "create_cover",
    "fold_conv_block_batch_norm",
    "is_conv_block", "load_careamics_bmz", "load_careamics_configuration", "mkldnn_fused_convolution", "n2v_manipulate_config",
    "save_careamics_configuration", "unet_output_bias", "unet_parts",
]

#: Supported versions: ``(lowest, first unsupported)`` release, compared on (major, minor, patch).
SUPPORTED: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "careamics": ((0, 3, 0), (0, 4, 0)),
    "torch": ((2, 4, 0), (2, 14, 0)),
}


class UnsupportedVersionError(JumpDenoiseError):
    """An installed library is outside the versions whose private API jumpdenoise uses."""


def _release(version: str) -> tuple[int, ...]:
    """``(major, minor, patch)`` of a version string (``2.11.0+cu128`` -> ``(2, 11, 0)``)."""
    numbers = [int(n) for n in re.findall(r"\d+", version.split("+", 1)[0])[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))


@functools.cache
def check_version(package: str) -> str:
    """The installed version of ``package``, checked against :data:`SUPPORTED`.

    Raises
    ------
    UnsupportedVersionError
        If the package is missing or outside the supported range.
    """
    low, high = SUPPORTED[package]
    shown = f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise UnsupportedVersionError(f"{package} is not installed (jumpdenoise needs {package}{shown})") from None
    if not low <= _release(version) < high:
        raise UnsupportedVersionError(f"{package} {version} is installed but jumpdenoise uses its private API "
                                      f"as of {package}{shown}: install a version in that range")
    return version


# ----------------------------------------------------------------------------- CAREamics


def careamics_masking_functions() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """CAREamics' N2V pixel manipulation: ``(uniform_manipulate, median_manipulate)``.

    Both take a ``(n, y, x)`` stack (``patch=`` / ``batch=``), ``mask_pixel_percentage``,
    ``subpatch_size``, ``struct_params`` and ``rng`` (a ``torch.Generator``), and return
    ``(masked, mask)``; every ``(y, x)`` plane is masked independently.
    """
    check_version("careamics")
    from careamics.lightning.modules.n2v_utils.pixel_manipulation import (
        median_manipulate,
        uniform_manipulate,
    )

    return uniform_manipulate, median_manipulate


def n2v_manipulate_config(**settings: Any) -> Any:
    """CAREamics' ``N2VManipulateConfig`` of ``settings`` (listed, not imported, by ``careamics.config.augmentations``)."""
    check_version("careamics")
    from careamics.config.algorithms.n2v_manipulation import N2VManipulateConfig

    return N2VManipulateConfig(**settings)


def save_careamics_configuration(config: Any, path: str | Path) -> Path:
    """Write a CAREamics ``Configuration`` as CAREamics' own YAML file; returns the path written."""
    check_version("careamics")
    from careamics.config.utils.configuration_io import save_configuration

    return Path(save_configuration(config, path))


def load_careamics_configuration(path: str | Path) -> Any:
    """Read a CAREamics configuration YAML file into its ``Configuration``."""
    check_version("careamics")
    from careamics.config.utils.configuration_io import load_configuration

    return load_configuration(path)


def create_cover(directory: Path, array_in: Any, array_out: Any) -> Path:
    """CAREamics' BMZ cover image of an input and output ``SC(Z)YX`` array, written in ``directory``."""
    check_version("careamics")
    from careamics.model_io.bioimage.cover_factory import (
        create_cover as careamics_create_cover,
    )

    return Path(careamics_create_cover(directory, array_in, array_out))


def load_careamics_bmz(rdf: Path) -> tuple[Any, Any]:
    """CAREamics' ``(Configuration, lightning module)`` of an unpacked BioImage Model Zoo package.

    Parameters
    ----------
    rdf
        The ``rdf.yaml`` (or ``bioimageio.yaml``) of a package unpacked into a folder the caller
        owns. Given a folder, bioimageio.spec reads the files in place; given the ``.zip``
        (what ``careamics.model_io.load_pretrained`` takes) it unpacks it into a
        ``tempfile.mkdtemp`` folder that nothing removes.

    Notes
    -----
    Loaded with bioimageio.spec's io checks off (``ValidationContext(perform_io_checks=False)``):
    with them on, it looks every ``github_user`` of the description (``maintainers``, authors)
    up at api.github.com, which fails without internet (compute nodes, CI). Io checks also
    compare the files with the description's SHA-256; :func:`jumpdenoise.predict.model.load_model`
    checks the CRC-32 of every member of the zip before unpacking it instead.
    """
    check_version("careamics")
    from bioimageio.spec import get_validation_context
    from careamics.model_io.bmz_io import load_from_bmz

    with get_validation_context().replace(perform_io_checks=False):
        return load_from_bmz(Path(rdf))


class UnsupportedNetwork(Exception):
    """The network is not a CAREamics 2D UNet a fast path knows how to run (use the generic path)."""


def is_conv_block(module: Any) -> bool:
    """Whether ``module`` is a CAREamics ``Conv_Block`` (conv, [norm], act, conv, [norm], act)."""
    return type(module).__name__ == "Conv_Block"


@dataclass(frozen=True)
class ConvBlockParts:
    """The modules of a CAREamics ``Conv_Block``, in the order they run.

    ``batch_norm1`` / ``batch_norm2`` are ``None`` when the block has no batch norm (or it
    was folded into the convolutions); dropout is left out (the identity in eval mode).
    """

    conv1: Any
    batch_norm1: Any
    conv2: Any
    batch_norm2: Any
    activation: Any


def conv_block_parts(block: Any) -> ConvBlockParts:
    """Read a CAREamics ``Conv_Block``.

    Raises
    ------
    UnsupportedNetwork
        If ``block`` is not a ``Conv_Block`` of the known structure.
    """
    check_version("careamics")
    if not is_conv_block(block) or not all(hasattr(block, a) for a in ("conv1", "conv2", "activation")):
        raise UnsupportedNetwork(f"not a CAREamics Conv_Block: {type(block).__name__}")
    norm = bool(getattr(block, "use_batch_norm", False))
    return ConvBlockParts(conv1=block.conv1, batch_norm1=block.batch_norm1 if norm else None, conv2=block.conv2,
                          batch_norm2=block.batch_norm2 if norm else None, activation=block.activation)


def fold_conv_block_batch_norm(block: Any) -> bool:
    """Fold the eval-mode batch norms of a CAREamics ``Conv_Block`` into its convolutions, in place.

    The batch norms become identities and a ReLU becomes in-place. Returns whether ``block``
    was changed (``False`` for other modules and blocks without batch norm).
    """
    if not is_conv_block(block) or not getattr(block, "use_batch_norm", False):
        return False
    check_version("careamics")
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    block.conv1 = fuse_conv_bn_eval(block.conv1, block.batch_norm1)
    block.conv2 = fuse_conv_bn_eval(block.conv2, block.batch_norm2)
    block.batch_norm1, block.batch_norm2 = torch.nn.Identity(), torch.nn.Identity()
    block.use_batch_norm = False
    if isinstance(block.activation, torch.nn.ReLU):
        block.activation = torch.nn.ReLU(inplace=True)
    return True


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
    ups: tuple[Any, ...]
    decoder_blocks: tuple[Any, ...]
    use_skip: tuple[bool, ...]
    final_conv: Any
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
    check_version("careamics")
    import torch

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


def unet_output_bias(unet: Any) -> Any:
    """The bias of a CAREamics UNet's output convolution (one entry per output channel).

    Adding ``d`` to entry ``c`` adds ``d`` to output channel ``c`` everywhere: the
    convolution is the UNet's last operation (no final activation; a residual input is added
    after it either way).

    Raises
    ------
    UnsupportedNetwork
        If ``unet`` is not a CAREamics 2D UNet (:func:`unet_parts`), its output convolution has
        no bias, or a final activation follows it (a shift would not shift the output).
    """
    import torch

    parts = unet_parts(unet)
    if not isinstance(parts.final_activation, torch.nn.Identity):
        raise UnsupportedNetwork(f"final activation {type(parts.final_activation).__name__}: the output "
                                 "convolution's bias does not shift the output")
    if parts.final_conv.bias is None:
        raise UnsupportedNetwork("output convolution without bias")
    return parts.final_conv.bias


# ----------------------------------------------------------------------------- torch


@functools.cache
def mkldnn_fused_convolution() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """torch's oneDNN convolutions with fused post-ops, or ``None`` when this torch build has none.

    Returns
    -------
    tuple or None
        ``(conv, conv_add)``: ``conv(x, weight, bias, padding, stride, dilation, groups, attr,
        scalars, algorithm)`` is ``torch.ops.mkldnn._convolution_pointwise`` (``attr="relu"``
        fuses the ReLU); ``conv_add(out, x, weight, bias, padding, stride, dilation, groups,
        "add", None, unary_attr, scalars, algorithm)`` is
        ``torch.ops.mkldnn._convolution_pointwise_.binary``, accumulating into ``out`` in place.
    """
    check_version("torch")
    import torch

    try:
        if not torch.backends.mkldnn.is_available():
            return None
        return torch.ops.mkldnn._convolution_pointwise, torch.ops.mkldnn._convolution_pointwise_.binary
    except (AttributeError, RuntimeError):  # torch built without oneDNN
        return None


def compiled_original(net: Any) -> Any:
    """The module ``torch.compile`` wrapped (its ``_orig_mod``), or ``net`` itself when not compiled."""
    check_version("torch")
    return getattr(net, "_orig_mod", net)
