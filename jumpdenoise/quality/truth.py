"""Ground truth of a plate: where it is, how to read it, and raw / denoised plates scored against it.

Layout (written by :func:`jumpdenoise.io.synthetic.generate_plate`, and the layout to follow
for any plate with a known truth)::

    <source_root>/Images/...                      the source plate (Phenix export)
    <source_root>/ground_truth/<WELL>-<FIELD>.npy  float32 (c, y, x): the expected image, in ADU
    <source_root>/ground_truth/truth.json          optional: {"channels": [...], "noise_level",
                                                   "noise_model": {channel: {gain, offset, read_noise}}}

``<FIELD>`` is the field index in the plate (``A01-0`` is well A01's first field). Without
``truth.json`` the truth's channels are taken to be the raw plate's, in order.

Where the truth is found (:func:`find_truth_dir`): an explicit folder (the config field
``predict.truth``) wins; otherwise ``ground_truth/`` next to the raw plate's source, i.e. in
the source path recorded by ``convert`` (``attrs["jumpdenoise"]["source"]["path"]``), its
parent or its grandparent (the Index XML, ``Images/``, then the source root).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from jumpdenoise.errors import JumpDenoiseError
from jumpdenoise.quality.metrics import default_data_range, score
from jumpdenoise.quality.noise import NoiseVariance

__all__ = ["TruthError", "TRUTH_FOLDER", "camera_noise_models", "find_truth_dir", "plate_truth_scores", "read_truth",
           "scored_fields", "truth_channels", "truth_dir_beside", "truth_fields"]

TRUTH_FOLDER = "ground_truth"
TRUTH_JSON = "truth.json"
MAX_SCORED_FIELDS = 8


class TruthError(JumpDenoiseError):
    """A ground-truth folder or file is missing, unreadable or unlike the plate it describes."""


def find_truth_dir(raw_plate: str | Path, explicit: str | Path | None = None) -> Path | None:
    """The ground-truth folder of ``raw_plate``, or ``None`` when it has none.

    Parameters
    ----------
    raw_plate
        The converted (raw) OME-Zarr plate.
    explicit
        A folder given by the user (``predict.truth``); it must exist.

    Raises
    ------
    TruthError
        If ``explicit`` is given and is not a folder.
    """
    if explicit is not None:
        folder = Path(explicit)
        if not folder.is_dir():
            raise TruthError(f"predict.truth: ground-truth folder {folder} not found")
        return folder
    from jumpdenoise.io.ngff import plate_info

    source = (plate_info(raw_plate).attrs.get("source") or {}).get("path")
    return truth_dir_beside(source) if source else None


def truth_dir_beside(source: str | Path) -> Path | None:
    """The ``ground_truth/`` folder holding ``.npy`` files next to a source plate path, or ``None``.

    Looked for in the source path itself, its parent and its grandparent (the Index XML,
    ``Images/``, then the source root).
    """
    start = Path(source)
    for folder in (start, start.parent, start.parent.parent):
        candidate = folder / TRUTH_FOLDER
        if candidate.is_dir() and any(candidate.glob("*.npy")):
            return candidate
    return None


def read_truth_json(truth_dir: str | Path) -> dict:
    """``truth.json`` of a truth folder (``{}`` when absent)."""
    path = Path(truth_dir) / TRUTH_JSON
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TruthError(f"{path}: not readable JSON ({exc})") from None


def truth_channels(truth_dir: str | Path, plate_channels: list[str]) -> list[str]:
    """Channel names of the truth arrays: ``truth.json``'s, else the plate's (in order)."""
    names = read_truth_json(truth_dir).get("channels")
    return [str(c) for c in names] if names else list(plate_channels)


def truth_fields(truth_dir: str | Path) -> list[str]:
    """Keys (``"A01-0"``) of the fields that have a truth file, sorted."""
    return sorted(p.stem for p in Path(truth_dir).glob("*.npy"))


def camera_noise_models(truth_dir: str | Path) -> dict[str, NoiseVariance]:
    """The camera noise per channel from ``truth.json`` (``{}`` when it has none).

    ``{"gain": g, "offset": o, "read_noise": r}`` becomes ``var(y) = g * y + (r^2 - g * o)``;
    its ``correlation`` (the noise's neighbour correlation, 0 when absent) is kept.
    """
    models = read_truth_json(truth_dir).get("noise_model") or {}
    out = {}
    for ch, m in models.items():
        try:
            gain, offset, read = float(m["gain"]), float(m["offset"]), float(m["read_noise"])
            correlation = float(m.get("correlation", 0.0))
        except (KeyError, TypeError, ValueError):
            raise TruthError(f"{Path(truth_dir) / TRUTH_JSON}: noise_model of {ch!r} needs gain, offset and "
                             f"read_noise, got {m!r}") from None
        out[str(ch)] = NoiseVariance(a=gain, b=read * read - gain * offset, n_pixels=0, correlation=correlation)
    return out


def read_truth(truth_dir: str | Path, well: str, field: int, channels: list[str] | None = None,
               plate_channels: list[str] | None = None) -> np.ndarray:
    """The truth of one field, ``(c, y, x)`` float32, optionally the named channels only.

    Parameters
    ----------
    truth_dir
        The ground-truth folder.
    well, field
        Field to read (``"A01"``, ``0``).
    channels
        Channels wanted, by name (default: all, in the file's order).
    plate_channels
        The raw plate's channels, used when ``truth.json`` does not name them.

    Raises
    ------
    TruthError
        If the file is missing or unreadable, or lacks a channel asked for.
    """
    path = Path(truth_dir) / f"{well}-{int(field)}.npy"
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise TruthError(f"{path}: ground truth missing for field {well}-{field}") from None
    except (OSError, ValueError) as exc:
        raise TruthError(f"{path}: not a readable .npy ({exc})") from None
    if data.ndim == 2:
        data = data[None]
    if channels is None:
        return data.astype(np.float32, copy=False)
    names = truth_channels(truth_dir, plate_channels or [])
    if len(names) != data.shape[0]:
        raise TruthError(f"{path}: {data.shape[0]} channel(s) but {len(names)} channel name(s) {names}")
    missing = [c for c in channels if c not in names]
    if missing:
        raise TruthError(f"{path}: no truth for channel(s) {missing} (truth channels: {names})")
    return data[[names.index(c) for c in channels]].astype(np.float32, copy=False)


def _sample(keys: list[str], cap: int | None) -> list[str]:
    """At most ``cap`` keys spread evenly over the sorted list (deterministic)."""
    if cap is None or len(keys) <= cap:
        return keys
    picks = np.linspace(0, len(keys) - 1, cap).round().astype(int)
    return [keys[i] for i in sorted(set(picks.tolist()))]


def scored_fields(denoised_plate: str | Path, truth_dir: str | Path, max_fields: int | None = MAX_SCORED_FIELDS
                  ) -> list[tuple[str, int]]:
    """Fields of the denoised plate that are done and have a truth, capped at ``max_fields``."""
    from jumpdenoise.io.ngff import done_keys

    have = set(truth_fields(truth_dir))
    keys = sorted(done_keys(denoised_plate) & have)
    return [(k.rsplit("-", 1)[0], int(k.rsplit("-", 1)[1])) for k in _sample(keys, max_fields)]


def plate_truth_scores(raw_plate: str | Path, denoised_plate: str | Path, truth_dir: str | Path, *,
                       max_fields: int | None = MAX_SCORED_FIELDS) -> dict[str, Any]:
    """Raw and denoised plates scored against their truth, per channel.

    Each field is scored with :func:`jumpdenoise.quality.metrics.score` (data range: the
    truth plane's ``p99.9 - p0.1``); the values are means over the scored fields.

    Parameters
    ----------
    raw_plate, denoised_plate
        The plates; the channels scored are the denoised plate's.
    truth_dir
        The ground-truth folder (:func:`find_truth_dir`).
    max_fields
        Fields scored at most (spread evenly over the done fields with a truth); ``None``: all.

    Returns
    -------
    dict
        ``{channel: {"raw": {psnr, ssim, bias_pct}, "denoised": {...}, "gain_db", "n_fields"}}``
        where ``gain_db`` is the denoised minus the raw mean PSNR.

    Raises
    ------
    TruthError
        If no done field of the denoised plate has a truth, or a truth file is unusable.
    """
    from jumpdenoise.io.ngff import plate_info, read_field

    raw_info, den_info = plate_info(raw_plate), plate_info(denoised_plate)
    channels = list(den_info.channels)
    fields = scored_fields(denoised_plate, truth_dir, max_fields)
    if not fields:
        raise TruthError(f"{truth_dir}: no ground truth for any denoised field of {denoised_plate}")
    sums: dict[str, dict[str, dict[str, float]]] = {
        ch: {kind: {"psnr": 0.0, "ssim": 0.0, "bias_pct": 0.0} for kind in ("raw", "denoised")} for ch in channels}
    for well, fld in fields:
        truth = read_truth(truth_dir, well, fld, channels, raw_info.channels)
        images = {"raw": read_field(raw_plate, well, fld, channels=channels),
                  "denoised": read_field(denoised_plate, well, fld)}
        for i, ch in enumerate(channels):
            if truth[i].shape != images["raw"][i].shape:
                raise TruthError(f"{truth_dir}/{well}-{fld}.npy: shape {truth[i].shape} differs from the plate's "
                                 f"{images['raw'][i].shape}")
            rng = default_data_range(truth[i])
            for kind, data in images.items():
                for key, value in score(data[i], truth[i], data_range=rng).items():
                    sums[ch][kind][key] += value
    n = len(fields)
    out: dict[str, Any] = {}
    for ch in channels:
        means = {kind: {k: v / n for k, v in vals.items()} for kind, vals in sums[ch].items()}
        out[ch] = {**means, "gain_db": means["denoised"]["psnr"] - means["raw"]["psnr"], "n_fields": n}
    return out
