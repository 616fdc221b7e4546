"""What predict applies to a trained network from the measurements on held-out fields.

After training, :func:`jumpdenoise.quality.gain.estimate_gain` measures on held-out fields,
without ground truth, and stores per channel in the run's ``quality.json`` (for the checkpoint
it measured):

- ``output_offset``: the constant the network adds to its whole output, in intensity units.
  A Noise2Void prediction estimates ``E[y_i | neighbours]``, whose mean over a field is the
  mean of the raw field ``y`` (clipped or not), so ``mean(f(y) - y)`` over held-out fields
  measures the network's offset. It is not zero in practice: in eval mode the UNet's
  BatchNorm layers use running statistics of the last training batches, and a small error in
  them shifts every output pixel alike (the same shift on every field). Across a whole field,
  such a shift can cost more than all the rest of the network's error. It is removed from the output
  convolution's bias (:func:`shift_output`), so every user of the loaded network (predict, the
  BMZ export, the gain estimate) runs the corrected one.
- ``blend``: the weights of the network's output in what predict writes
  (:mod:`jumpdenoise.quality.blend`), measured on the corrected network.

:func:`apply_calibration` gives a loaded model both; :func:`jumpdenoise.predict.model.load_model`
calls it for the checkpoint it loads.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["apply_calibration", "blend_weights", "calibration_record", "measure_output_offset",
           "recorded_output_offset", "shift_output"]

log = logging.getLogger(__name__)


def calibration_record(run_dir: str | Path | None, checkpoint: str | Path | None) -> dict | None:
    """The run's ``quality.json`` when it was measured on ``checkpoint``, else ``None``.

    ``None`` also when there is no run folder, no checkpoint or no ``quality.json``; a record
    of another checkpoint, or one that cannot be read, is logged.
    """
    if run_dir is None or checkpoint is None:
        return None
    path = Path(run_dir) / "quality.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("%s: not readable; predicting with the network's output alone (no output-offset correction, "
                    "no blend with the raw image)", path)
        return None
    measured = record.get("checkpoint")
    if measured is None or Path(run_dir, measured).resolve() != Path(checkpoint).resolve():
        log.warning("%s was measured on checkpoint %s, not on %s: predicting with the network's output alone "
                    "(no output-offset correction, no blend with the raw image)", path, measured,
                    Path(checkpoint).name)
        return None
    return record


def _per_channel(record: Mapping | None, channels: Sequence[str] | None, key: str, width: int) -> np.ndarray | None:
    """``record["channels"][ch][key]`` of each channel as a ``(c, width)`` float array, or ``None``."""
    if record is None or not channels:
        return None
    entries = record.get("channels") or {}
    try:
        values = [entries[ch][key] for ch in channels]
        out = np.asarray([[float(v) for v in np.atleast_1d(value)] for value in values], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    return out if out.shape == (len(channels), width) and np.all(np.isfinite(out)) else None


def blend_weights(run_dir: str | Path | None, checkpoint: str | Path | None,
                  channels: Sequence[str] | None) -> np.ndarray | None:
    """The blend weights of each channel of a loaded checkpoint, or ``None`` to predict unblended.

    Parameters
    ----------
    run_dir
        The training run folder holding ``quality.json`` (``None``: no run folder).
    checkpoint
        The checkpoint file actually loaded; the weights apply only to the checkpoint they
        were measured on.
    channels
        The model's channel names, in its input order.

    Returns
    -------
    numpy.ndarray or None
        ``(c, 2)`` ``float32`` ``[low, high]`` weights in model channel order; ``None`` when the
        run has no ``quality.json``, it was measured on another checkpoint (logged), it
        lacks a channel, or every weight is 1 (the network alone).
    """
    return _recorded_blend(calibration_record(run_dir, checkpoint), channels)


def _recorded_blend(record: Mapping | None, channels: Sequence[str] | None) -> np.ndarray | None:
    """``record``'s blend weights per channel as ``(c, 2)`` float32, or ``None``: none recorded, or
    every weight 1 (the network's output alone, exactly)."""
    weights = _per_channel(record, channels, "blend", 2)
    return None if weights is None or np.all(weights == 1.0) else weights.astype(np.float32)


def recorded_output_offset(record: Mapping | None, channels: Sequence[str] | None) -> np.ndarray | None:
    """The ``output_offset`` of each channel in a ``quality.json`` record (intensity units), or ``None``."""
    offset = _per_channel(record, channels, "output_offset", 1)
    return None if offset is None else offset[:, 0]


def measure_output_offset(predictor: Any, fields: Sequence[np.ndarray]) -> np.ndarray:
    """``mean(f(y) - y)`` per channel over the pixels of held-out raw ``(c, y, x)`` fields.

    ``predictor`` is a :class:`~jumpdenoise.predict.engine.Predictor` of the network alone
    (no blend), run unmasked, as predict runs it.
    """
    total, pixels = None, 0
    for field in fields:
        diff = (predictor.denoise(field).astype(np.float64) - field).sum(axis=(1, 2))
        total = diff if total is None else total + diff
        pixels += field.shape[1] * field.shape[2]
    if total is None:
        raise ValueError("no field to measure the output offset on")
    return total / pixels


def shift_output(loaded: Any, offset: np.ndarray) -> bool:
    """Subtract ``offset`` (intensity units, per channel) from the network's output, in place.

    The output convolution's bias moves by ``-offset / std`` (the network works in normalised
    units), and ``loaded.output_offset`` adds up what was removed. A network whose output a
    bias cannot shift (not a CAREamics UNet, a final activation) is left as it is (logged).

    Returns
    -------
    bool
        Whether the network was changed.
    """
    import torch

    from jumpdenoise.compat import UnsupportedNetwork, unet_output_bias

    offset = np.asarray(offset, dtype=np.float64)
    try:
        bias = unet_output_bias(loaded.module)
    except UnsupportedNetwork as exc:
        log.warning("%s: output offset %s not removed (%s)", loaded.source, offset.round(3).tolist(), exc)
        return False
    with torch.no_grad():
        bias.sub_(torch.as_tensor(offset / loaded.std, dtype=bias.dtype, device=bias.device))
    loaded.output_offset = offset if loaded.output_offset is None else loaded.output_offset + offset
    return True


def apply_calibration(loaded: Any, record: Mapping | None) -> Any:
    """``loaded`` with the output offset and the blend weights of ``record`` (a ``quality.json``
    measured on its checkpoint, see :func:`calibration_record`), as a new model.

    The network is copied (``loaded`` is not changed) when its offset must move: to the recorded
    one, from what was already removed. Without a record, or channels the record lacks, the
    model is returned unblended and uncorrected as it is; weights of 1 in both bands (a run
    estimated with ``blend=False``) leave it unblended.
    """
    channels = loaded.channels
    out = dataclasses.replace(loaded, blend=_recorded_blend(record, channels))
    offset = recorded_output_offset(record, channels)
    if offset is not None:
        move = offset - (loaded.output_offset if loaded.output_offset is not None else 0.0)
        if np.any(move != 0):
            out.module = copy.deepcopy(loaded.module)
            shift_output(out, move)
    return out
