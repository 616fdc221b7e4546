"""Per-object CellProfiler features of one field with ``cp_measure``.

Each family is measured by one call of :func:`cp_measure.featurizer.featurize` on the field's
nuclei and cells (``cells`` label ``k`` holds nucleus ``k``), so every column is known to
belong to its family; columns are named ``<family>:<cp_measure column>``. Pixels are divided
by a per-channel divisor and clipped to 0..1 first (CellProfiler reads 16-bit images as
``value / 65535``), identically for every version of a field.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

OBJECTS = ("nuclei", "cells")
_FLAGS = ("intensity", "texture", "granularity", "radial_distribution", "radial_zernikes", "sizeshape",
          "zernike", "feret", "correlation_pearson", "correlation_costes", "correlation_manders_fold",
          "correlation_rwc")


def family_flags(family: str, *, zernike: bool = False, costes: bool = False) -> dict[str, bool]:
    """``make_featurizer_config`` switches that measure exactly one of our families."""
    on = {
        "intensity": {"intensity"},
        "texture": {"texture"},
        "granularity": {"granularity"},
        "radial_distribution": {"radial_distribution"} | ({"radial_zernikes"} if zernike else set()),
        "correlation": {"correlation_pearson", "correlation_manders_fold", "correlation_rwc"}
        | ({"correlation_costes"} if costes else set()),
        "sizeshape": {"sizeshape", "feret"} | ({"zernike"} if zernike else set()),
    }[family]
    return {flag: flag in on for flag in _FLAGS}


def featurizer_config(family: str, channels: list[str], *, zernike: bool = False, costes: bool = False) -> dict:
    """The ``cp_measure`` featurizer configuration of one family on nuclei and cells."""
    from cp_measure.featurizer import make_featurizer_config

    flags = family_flags(family, zernike=zernike, costes=costes)
    return make_featurizer_config(list(channels), objects=list(OBJECTS), **flags,
                                  correlation_costes_params={"scale_max": 65535})


def scale_pixels(pixels: np.ndarray, divisors: float | list[float]) -> np.ndarray:
    """(c, y, x) pixels as CellProfiler sees them: ``clip(value / divisor, 0, 1)``, float32.

    ``divisors``: one number, or one per channel.
    """
    div = np.asarray(divisors, np.float32).reshape(-1, 1, 1)
    return np.clip(np.asarray(pixels, np.float32) / div, 0.0, 1.0)


def measure_field(pixels: np.ndarray, nuclei: np.ndarray, cells: np.ndarray, channels: list[str],
                  families: list[str], *, divisors: float | list[float] = 65535.0, zernike: bool = False,
                  costes: bool = False) -> pd.DataFrame:
    """Features of every nucleus and cell of one field.

    Parameters
    ----------
    pixels
        (c, y, x) field in ADU, channels in the order of ``channels``.
    nuclei, cells
        Label images (y, x); cell ``k`` holds nucleus ``k``.
    families
        Feature families (see :data:`jumpdenoise.config.evaluate.ALL_FAMILIES`).
    divisors
        Pixels are divided by this (one number or one per channel), then clipped to 0..1.

    Returns
    -------
    pandas.DataFrame
        One row per object: ``object`` (``"nuclei"`` / ``"cells"``), ``label``, then one
        float column per feature named ``<family>:<cp_measure column>``; empty when the
        field has no object.
    """
    from cp_measure.featurizer import featurize

    masks = np.stack([nuclei, cells]).astype(np.int32)[None]
    if not masks.any():
        return pd.DataFrame({"object": pd.Series(dtype=str), "label": pd.Series(dtype=np.int64)})
    image = scale_pixels(pixels, divisors)[None]
    blocks, index = [], None
    for family in families:
        config = featurizer_config(family, channels, zernike=zernike, costes=costes)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            data, columns, rows = featurize(image, masks, config)
        keys = pd.MultiIndex.from_tuples([(obj, int(label)) for _, obj, label in rows], names=["object", "label"])
        index = keys if index is None else index
        if not keys.equals(index):
            raise RuntimeError(f"cp_measure returned objects in another order for family {family!r}")
        blocks.append(pd.DataFrame(data, index=keys, columns=[f"{family}:{c}" for c in columns]))
    return pd.concat(blocks, axis=1).reset_index()


def feature_family(column: str) -> str:
    """The family of a ``<family>:<name>`` feature column."""
    return column.split(":", 1)[0]
