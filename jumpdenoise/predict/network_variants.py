"""Which form of the network a :class:`~jumpdenoise.predict.engine.Predictor` runs.

The same weights run as the network itself (``"grouped"``), converted to channels-last, split
into one dense sub-network per independent channel (:mod:`jumpdenoise.predict.gpu_fast`), or
through the fused CPU path (:mod:`jumpdenoise.predict.cpu_fast`); batch norms are folded into
their convolutions first (:func:`fuse_for_inference`). Outputs are equal up to float rounding.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CUDA_AUTO_VARIANT", "NETWORK_VARIANTS", "fuse_for_inference", "resolve_network_variant"]

#: The network variants a :class:`~jumpdenoise.predict.engine.Predictor` accepts (see :mod:`jumpdenoise.predict.gpu_fast`).
NETWORK_VARIANTS = ("auto", "grouped", "channels_last", "split")

#: What ``network_variant="auto"`` runs on CUDA devices, in fp32 and in bf16: the fastest variant measured
#: for each (README, "Benchmarks"; ``benchmarks/predict.py --engine-only`` compares them).
CUDA_AUTO_VARIANT = {"fp32": "grouped", "bf16": "split"}


def resolve_network_variant(variant: str, device_type: str, bf16: bool = False, cpu_fast: bool = True) -> str:
    """The network variant a :class:`~jumpdenoise.predict.engine.Predictor` runs: ``"cpu_fast"``, ``"grouped"``, ``"channels_last"`` or ``"split"``.

    ``"auto"`` is :mod:`jumpdenoise.predict.cpu_fast` on the CPU in fp32 (when ``cpu_fast``),
    :data:`CUDA_AUTO_VARIANT` on CUDA, the network as it is otherwise; any other variant is
    used as given, on any device.

    Raises
    ------
    ValueError
        If ``variant`` is not one of :data:`NETWORK_VARIANTS`.
    """
    if variant not in NETWORK_VARIANTS:
        raise ValueError(f"unknown network variant {variant!r} (expected one of {', '.join(NETWORK_VARIANTS)})")
    if variant != "auto":
        return variant
    if device_type == "cpu":
        return "cpu_fast" if cpu_fast and not bf16 else "grouped"
    return CUDA_AUTO_VARIANT["bf16" if bf16 else "fp32"] if device_type == "cuda" else "grouped"


def fuse_for_inference(module: Any) -> Any:
    """A copy of a CAREamics UNet with each batch norm folded into its convolution.

    Eval-mode batch norm is an affine map per channel, so ``bn(conv(x))`` is one
    convolution with scaled weights and shifted bias (``torch.nn.utils.fusion``); ReLUs
    become in-place. This saves about a fifth of the CPU time (batch norm and ReLU are
    memory-bound) and changes outputs by float rounding only (~1e-6 relative). Modules
    other than CAREamics ``Conv_Block`` are left as they are; the original is untouched.
    """
    import copy

    from jumpdenoise.compat import fold_conv_block_batch_norm

    fused = copy.deepcopy(module).eval()
    for block in fused.modules():
        fold_conv_block_batch_norm(block)
    return fused
