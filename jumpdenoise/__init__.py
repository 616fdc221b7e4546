"""jumpdenoise: Noise2Void denoising of JUMP Cell Painting plates.

Public API (imported lazily, so ``import jumpdenoise`` does no heavy work):

- :func:`open_plate` — an OME-Zarr plate as a lazy xarray DataArray (well, field, c, y, x).
- :func:`denoise_array` — denoise a YX / CYX numpy array with a trained model.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "open_plate": "jumpdenoise.io.xarray_view",
    "load_config": "jumpdenoise.config",
    "denoise_array": "jumpdenoise.predict.arrays",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jumpdenoise' has no attribute {name!r}")


__all__ = sorted(_LAZY) + ["__version__"]
