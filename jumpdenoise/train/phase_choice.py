"""The phase split a training uses: ``train.n2v.phase_split``, or measured on the training fields.

:func:`resolve_phase_split` gives the split (1: the fields themselves, 2: their 2 x 2 phase
sub-images, :mod:`jumpdenoise.compute.phases`) with the record written to the run folder's
``noise_correlation.json``; :func:`read_phase_split` is what prediction reads back. A run
folder that already holds a record keeps its choice (a resumed run trains on what it started
with), unless the setting names a split.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jumpdenoise.errors import ModelError
from jumpdenoise.train.run_folder import RunFolder

__all__ = ["MEASURED_FIELDS", "read_phase_split", "resolve_phase_split"]

log = logging.getLogger(__name__)

#: Training fields the noise correlation is measured on.
MEASURED_FIELDS = 4


def read_phase_split(run_dir: str | Path) -> int:
    """The phase split a run folder's model was trained with (1 when it has no record).

    Raises
    ------
    ModelError
        If ``noise_correlation.json`` cannot be read or names no valid split.
    """
    path = RunFolder(Path(run_dir)).noise_correlation
    if not path.is_file():
        return 1
    try:
        split = json.loads(path.read_text())["phase_split"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not a readable phase-split record ({exc})") from None
    if split not in (1, 2):
        raise ModelError(f"{path}: phase_split must be 1 or 2, got {split!r}")
    return int(split)


def resolve_phase_split(run_dir: str | Path, setting: str | int, refs: Sequence[Any],
                        channels: Sequence[str]) -> tuple[int, dict]:
    """The split to train with and its record (``{"phase_split", "setting", "channels"}``).

    ``setting``: ``train.n2v.phase_split``. ``auto`` reuses the run folder's record when there is
    one, else measures the noise's neighbour correlation per channel on the first
    :data:`MEASURED_FIELDS` of ``refs`` (:func:`jumpdenoise.quality.correlation.neighbour_correlation`).
    """
    from jumpdenoise.quality.correlation import (
        choose_phase_split,
        neighbour_correlation,
    )

    if setting != "auto":
        return int(setting), {"phase_split": int(setting), "setting": setting, "channels": {}}
    path = RunFolder(Path(run_dir)).noise_correlation
    if path.is_file():
        try:
            record = json.loads(path.read_text())
            if record.get("setting") == "auto" and record.get("phase_split") in (1, 2):
                return int(record["phase_split"]), record
        except (OSError, ValueError, AttributeError):
            pass  # measured again below
    fields = [ref.load() for ref in list(refs)[:MEASURED_FIELDS]]
    measured = {ch: neighbour_correlation([f[c] for f in fields]) for c, ch in enumerate(channels)}
    split = choose_phase_split(measured)
    summary = ", ".join(f"{ch} {'n/a' if m.rho1 is None else f'{m.rho1:+.2f}'}" for ch, m in measured.items())
    log.info("noise correlation between neighbouring pixels: %s -> phase split %d", summary, split)
    return split, {"phase_split": split, "setting": "auto",
                   "channels": {ch: m.as_dict() for ch, m in measured.items()}}
