"""Training data from an OME-Zarr plate: field selection by name, normalisation, checks.

Only level-0 (full resolution) arrays are ever referenced: pyramid levels have spatially
correlated noise, which N2V cannot remove.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from jumpdenoise.errors import ConfigError, PlateError
from jumpdenoise.train.fields import FieldRef

log = logging.getLogger("jumpdenoise.train")


def plate_fields(plate: str | Path, *, channels: list[str] | None = None, wells: list[str] | None = None,
                 fields: list[int] | None = None) -> tuple[object, list[str], list[FieldRef]]:
    """Select fields of a plate for training.

    Parameters
    ----------
    plate
        OME-Zarr HCS plate.
    channels
        Channel names, in the order the model sees them (default: all).
    wells, fields
        Wells and field indices to use (default: all).

    Returns
    -------
    (PlateInfo, channel names, field references)

    Raises
    ------
    PlateError
        If the plate is missing, or lacks a channel, well or field asked for.
    """
    from jumpdenoise.io.ngff import plate_info
    from jumpdenoise.io.ngff_markers import done_keys, field_key, tracks_completion

    path = Path(plate)
    if not path.exists():
        raise PlateError(f"train.plate: plate not found: {path} (convert the source first, or set train.plate)")
    info = plate_info(path)
    names = list(info.channels) if channels is None else list(channels)
    missing = [c for c in names if c not in info.channels]
    if missing:
        raise PlateError(f"train.channels: {missing} not in plate {path} (its channels: {info.channels})")
    use_wells = list(info.wells) if wells is None else list(wells)
    unknown = [w for w in use_wells if w not in info.wells]
    if unknown:
        raise PlateError(f"train.wells: {unknown} not in plate {path} (its wells: {list(info.wells)})")
    index = tuple(info.channels.index(c) for c in names)
    level0 = info.level_paths[0]
    # a plate that records completion offers only its complete fields (the others may hold zeros)
    complete = done_keys(path) if info.kind != "external" and tracks_completion(path) else None
    refs: list[FieldRef] = []
    incomplete: list[str] = []
    for w in use_wells:
        for f in info.wells[w]:
            if fields is not None and f not in fields:
                continue
            if complete is not None and field_key(w, f) not in complete:
                incomplete.append(f"{w}/{f}")
                continue
            refs.append(FieldRef(
                key=f"{w}-{f}", group=w, shape=(len(names), *map(int, info.shape_yx)),
                rows=(0, int(info.shape_yx[0])), zarr_path=str(info.path),
                array_path=f"{info.image_path(w, f)}/{level0}", channel_index=index))
    if incomplete:
        log.warning("%s: %d field(s) not marked complete are left out of training: %s", path, len(incomplete),
                    ", ".join(incomplete[:10]) + (" ..." if len(incomplete) > 10 else ""))
    if not refs:
        if incomplete:
            raise PlateError(f"train: no complete field to train on in plate {path} (not complete: "
                             f"{', '.join(incomplete[:10])}); finish its conversion first")
        raise PlateError(f"train.fields: none of fields {fields} exist in wells {use_wells} of plate {path}")
    return info, names, refs


def plate_normalization(info: object, channels: list[str], refs: list[FieldRef],
                        max_fields: int = 16) -> tuple[list[float], list[float], str]:
    """Per-channel mean and std for training, computed once.

    The plate's stored statistics (``attrs["jumpdenoise"]["statistics"]["plate"]``) are used
    when present; otherwise (a plate without finalised statistics) mean/std are computed
    from up to ``max_fields`` evenly spaced fields and the source says so.

    Returns
    -------
    (mean, std, source)
    """
    stats = (getattr(info, "statistics", None) or {}).get("plate") or {}
    if all(c in stats and "mean" in stats[c] and "std" in stats[c] for c in channels):
        mean = [float(stats[c]["mean"]) for c in channels]
        std = [max(float(stats[c]["std"]), 1e-6) for c in channels]
        return mean, std, f"{info.path} (plate statistics)"
    picks = np.unique(np.linspace(0, len(refs) - 1, min(max_fields, len(refs))).round().astype(int))
    log.warning("plate %s has no statistics for %s: computing mean/std from %d field(s)",
                info.path, channels, len(picks))
    mean, std = arrays_mean_std([refs[i].load() for i in picks])
    return mean, std, f"{info.path} (computed from {len(picks)} field(s): plate has no statistics)"


def arrays_mean_std(arrays: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over ``(c, y, x)`` arrays, pooled (float64 accumulators)."""
    c = arrays[0].shape[0]
    n = np.zeros(c)
    s = np.zeros(c)
    s2 = np.zeros(c)
    for a in arrays:
        if a.shape[0] != c:
            raise ConfigError(f"images have {a.shape[0]} and {c} channels: all images need the same channels")
        a64 = a.reshape(c, -1).astype(np.float64)
        n += a64.shape[1]
        s += a64.sum(1)
        s2 += (a64 ** 2).sum(1)
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0))
    return mean.tolist(), np.maximum(std, 1e-6).tolist()
