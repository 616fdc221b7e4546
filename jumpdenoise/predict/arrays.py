"""Denoise numpy arrays in memory (notebooks, the BSD68 protocol, single images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jumpdenoise.compute.tiling import BlendMode
from jumpdenoise.errors import ModelError
from jumpdenoise.predict.model import LoadedModel, load_model

__all__ = ["denoise_array"]


def denoise_array(model: LoadedModel | str | Path, image: np.ndarray, *, tile_size: int | None = 256,
                  overlap: int | None = 48, batch_size: int = 8, bf16: bool = False, tta: bool = False,
                  mode: BlendMode = "crop", device: str | None = None, compile: bool = False,
                  network_variant: str = "auto", autotune: bool = False) -> np.ndarray:
    """Denoise one image with a trained model.

    Parameters
    ----------
    model
        A :class:`~jumpdenoise.predict.model.LoadedModel`, or a run folder / checkpoint /
        BioImage Model Zoo zip (loaded with :func:`~jumpdenoise.predict.model.load_model`).
    image
        ``YX`` (single-channel model) or ``CYX`` with the model's channel count, any
        dtype, any size (padded to the network's stride internally).
    tile_size
        Tile side; ``None`` predicts the whole image at once.
    overlap
        Overlap of tiles; ``None`` chooses the smallest exact one (twice the receptive
        field radius). 48 (CAREamics' default) is exact for UNets of depth <= 1 and within
        ~1e-4 of exact for depth 2.
    batch_size
        Tiles per forward pass.
    bf16
        bfloat16 autocast.
    tta
        Average over the 8 flips/rotations.
    mode
        ``"crop"`` or ``"blend"`` stitching.
    device
        Where to compute when ``model`` is a path (default CPU); a loaded model stays on its
        device unless ``device`` is given.
    compile
        ``torch.compile`` the network.
    network_variant, autotune
        How the network runs and whether cuDNN autotunes
        (:class:`~jumpdenoise.predict.engine.Predictor`).

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``image``, in the units of ``image`` (normalised with the
        model's mean/std, denormalised after).

    Raises
    ------
    ModelError
        If the image's channel count does not match the model's.
    """
    from jumpdenoise.predict.engine import Predictor

    if isinstance(model, LoadedModel):
        lm = load_model(model, device) if device is not None else model
    else:
        lm = load_model(model, device or "cpu")
    arr = np.asarray(image)
    if arr.ndim == 2:
        if lm.n_channels != 1:
            raise ModelError(f"{lm.source}: the model needs {lm.n_channels} channels (CYX input); got a YX image "
                             f"of shape {arr.shape}")
        cyx = arr[None]
    elif arr.ndim == 3:
        if arr.shape[0] != lm.n_channels:
            raise ModelError(f"{lm.source}: the model has {lm.n_channels} channel(s); the image has "
                             f"{arr.shape[0]} (shape {arr.shape}, expected CYX)")
        cyx = arr
    else:
        raise ModelError(f"expected a YX or CYX image, got shape {arr.shape}")
    predictor = Predictor(lm, tile_size=tile_size, overlap=overlap, mode=mode, batch_size=batch_size,
                          bf16=bf16, compile=compile, tta=tta, network_variant=network_variant, autotune=autotune)
    out = predictor.denoise(cyx)
    return out[0] if arr.ndim == 2 else out
