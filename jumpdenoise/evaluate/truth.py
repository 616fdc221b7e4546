"""Ground truth of a synthetic plate: ``<WELL>-<FIELD>.npy`` files, float32 (c, y, x) in ADU.

The folder (``<source root>/ground_truth``, written by
:func:`jumpdenoise.io.synthetic.generate_plate`) may hold ``truth.json`` with
``{"channels": [...]}``, the channel order of the arrays; without it the arrays follow the
raw plate's channel order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jumpdenoise.errors import PlateError

TRUTH_DIR = "ground_truth"


def find_truth_dir(source_path: Path | None) -> Path | None:
    """The ``ground_truth`` folder of a source plate (its ``Images`` folder or the folder above).

    Returns ``None`` when there is none.
    """
    if source_path is None:
        return None
    source_path = Path(source_path)
    for folder in (source_path, source_path.parent, source_path.parent.parent):
        if (folder / TRUTH_DIR).is_dir():
            return folder / TRUTH_DIR
    return None


def truth_channels(truth_dir: Path, plate_channels: list[str]) -> list[str]:
    """Channel order of the truth arrays: ``truth.json`` ``channels``, else the plate's."""
    meta = Path(truth_dir) / "truth.json"
    if not meta.is_file():
        return list(plate_channels)
    try:
        names = json.loads(meta.read_text()).get("channels")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise PlateError(f"{meta}: not a JSON object with 'channels' ({exc})") from None
    return list(names) if names else list(plate_channels)


def read_truth_field(truth_dir: Path, well: str, field: int, channels: list[str],
                     plate_channels: list[str]) -> np.ndarray:
    """The truth of one field, float32 (c, y, x), in the order of ``channels``.

    Raises
    ------
    PlateError
        If the file is missing or lacks one of ``channels`` (the message names it).
    """
    path = Path(truth_dir) / f"{well}-{field}.npy"
    if not path.is_file():
        raise PlateError(f"{path}: no ground truth for well {well} field {field}")
    data = np.load(path)
    order = truth_channels(truth_dir, plate_channels)
    if data.ndim != 3 or data.shape[0] != len(order):
        raise PlateError(f"{path}: expected ({len(order)}, y, x) for channels {order}, got shape {data.shape}")
    missing = [c for c in channels if c not in order]
    if missing:
        raise PlateError(f"{path}: no channel(s) {missing} in the truth (channels: {order})")
    return np.ascontiguousarray(data[[order.index(c) for c in channels]], dtype=np.float32)
