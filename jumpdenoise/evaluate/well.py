"""Evaluate the fields of one well: segment, measure every version with shared masks, compare masks.

Versions of a field: ``truth`` (when the plate has ground truth), ``raw`` and ``denoised``.
The reference is the truth when present, else raw. Features of every version are measured
on the reference's masks; each version is also segmented on its own pixels and its masks are
matched against the reference's (object counts, matches at the IoU threshold).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from jumpdenoise.config.evaluate import EvaluateConfig
from jumpdenoise.evaluate.features import OBJECTS, measure_field
from jumpdenoise.evaluate.segment import match_counts, segment_field


@dataclass(frozen=True)
class Sources:
    """Where the versions of a field come from.

    Attributes
    ----------
    raw, denoised
        The two plates.
    truth
        Ground-truth folder, or ``None``.
    channels
        Channels measured (present in every version).
    divisors
        Per channel, what pixels are divided by before measuring.
    """

    raw: Path
    denoised: Path
    truth: Path | None
    channels: list[str]
    divisors: list[float]


def read_versions(sources: Sources, well: str, field: int) -> dict[str, np.ndarray]:
    """The versions of one field, (c, y, x) float32 in ADU, channels in ``sources.channels`` order."""
    from jumpdenoise.io.ngff import plate_info, read_field
    from jumpdenoise.quality.truth import read_truth

    versions: dict[str, np.ndarray] = {}
    if sources.truth is not None:
        versions["truth"] = read_truth(sources.truth, well, field, sources.channels,
                                       plate_info(sources.raw).channels)
    for name, plate in (("raw", sources.raw), ("denoised", sources.denoised)):
        versions[name] = read_field(plate, well, field, channels=sources.channels).astype(np.float32)
    return versions


def evaluate_field(versions: dict[str, np.ndarray], channels: list[str], divisors: list[float],
                   settings: EvaluateConfig) -> tuple[pd.DataFrame, list[dict], dict[str, np.ndarray]]:
    """Features and segmentation agreement of one field.

    Returns
    -------
    features
        Rows of every version on the reference masks (column ``version`` added).
    agreement
        One record per (version, object) with ``n_reference``, ``n_predicted``, ``matched``.
    masks
        The reference ``nuclei`` and ``cells`` label images.
    """
    reference = "truth" if "truth" in versions else "raw"
    i_nuc, i_cell = channels.index(settings.nuclei_channel), channels.index(settings.cells_channel)

    def segment(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return segment_field(pixels[i_nuc], pixels[i_cell], settings.method, settings.min_nucleus_area)

    ref_masks = segment(versions[reference])
    tables, agreement = [], []
    for name, pixels in versions.items():
        table = measure_field(pixels, *ref_masks, channels, list(settings.families),
                              divisors=divisors, zernike=settings.zernike,
                              costes=settings.costes)
        table.insert(0, "version", name)
        tables.append(table)
        if name == reference:
            continue
        own = segment(pixels)
        for obj, ref_mask, own_mask in zip(OBJECTS, ref_masks, own):
            agreement.append({"version": name, "object": obj, "reference": reference,
                              **match_counts(ref_mask, own_mask, settings.iou_threshold)})
    return pd.concat(tables, ignore_index=True), agreement, dict(zip(OBJECTS, ref_masks))


def evaluate_well(sources: Sources, well: str, fields: list[int], settings: EvaluateConfig,
                  out_dir: Path) -> dict:
    """Evaluate the fields of ``well``; write ``<WELL>.features.csv.gz`` and ``<WELL>.json``.

    Fields whose denoised pixels are all zero (not predicted) are skipped and listed. The
    JSON is written last, so its presence marks the well as done.
    """
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    tables, agreement, skipped = [], [], []
    for field in fields:
        versions = read_versions(sources, well, field)
        if not np.any(versions["denoised"]):
            skipped.append(field)
            continue
        table, records, masks = evaluate_field(versions, sources.channels, sources.divisors, settings)
        table.insert(1, "well", well)
        table.insert(2, "field", field)
        tables.append(table)
        agreement += [{"well": well, "field": field, **r} for r in records]
        if len(tables) == 1:
            np.savez_compressed(out_dir / f"{well}.masks.npz", field=field, **masks)
    features = out_dir / f"{well}.features.csv.gz"
    if tables:
        pd.concat(tables, ignore_index=True).to_csv(features, index=False)
    record = {"well": well, "channels": sources.channels, "nuclei_channel": settings.nuclei_channel,
              "cells_channel": settings.cells_channel, "fields": [f for f in fields if f not in skipped],
              "skipped_fields": skipped,
              "features": features.name if tables else None, "agreement": agreement}
    tmp = out_dir / f".{well}.json.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(out_dir / f"{well}.json")
    return {"well": well, "fields": len(record["fields"]), "skipped": len(skipped)}
