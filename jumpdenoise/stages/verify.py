"""Pixel-exact comparison of a converted plate against its source TIFFs.

Independent of the conversion's reader: every plane is read again with plain
``tifffile.imread`` and compared, value for value, with the plate's level-0 array.
Used by ``jumpdenoise verify SOURCE PLATE``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from jumpdenoise.config.source import SourceConfig
from jumpdenoise.stages.base import Unit

if TYPE_CHECKING:
    from jumpdenoise.stages.session import PlateSession
    from jumpdenoise.executors.base import Executor, Outcome


@dataclass(frozen=True)
class FieldCheck:
    """One field to compare: its key and the (channel, path, channel index, axes) of each plane."""

    key: str
    well: str
    index: int
    planes: tuple[tuple[str, str, int | None, str], ...]


@dataclass
class VerifyReport:
    """Result of :func:`verify_plate`.

    Attributes
    ----------
    plate, source
        What was compared.
    n_fields
        Fields of the source compared.
    differences
        One line per difference (field, channel, what differs).
    notes
        Facts that are not differences (images the source lists without a file).
    """

    plate: Path
    source: str
    n_fields: int
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the plate matches the source exactly."""
        return not self.differences

    def __str__(self) -> str:
        head = f"verify {self.plate} against {self.source}: {self.n_fields} field(s) compared, "
        lines = [f"note: {n}" for n in self.notes]
        if self.ok:
            return "\n".join(lines + [head + "all pixels identical"])
        lines.append(head + f"{len(self.differences)} difference(s):")
        lines += [f"  {d}" for d in self.differences]
        return "\n".join(lines)


def _read_plane(path: str, channel_index: int | None, axes: str) -> np.ndarray:
    import tifffile

    arr = tifffile.imread(path)
    if channel_index is None:
        return arr
    arr = np.squeeze(arr) if arr.ndim > len(axes) else arr
    return np.take(arr, channel_index, axis=axes.index("C"))


def check_field(plate: str, channels: tuple[str, ...], task: FieldCheck) -> list[str]:
    """Compare one field of ``plate`` with its TIFFs; return the differences found.

    A field the plate does not mark complete, or whose chunks are missing, fail their
    checksums or do not decode, is a difference naming the field (and chunk file).
    """
    from jumpdenoise.io.ngff import field_complete, read_field
    from jumpdenoise.io.ngff_markers import tracks_completion

    if tracks_completion(plate) and not field_complete(plate, task.well, task.index):
        return [f"{task.key}: not converted (the plate has no completion marker for it)"]
    try:  # chunk checksums are verified as the field is read
        data = read_field(plate, task.well, task.index)
    except Exception as exc:  # noqa: BLE001 - every failure is a difference to report
        return [f"{task.key}: cannot read from the plate ({exc})"]
    found = {name: i for i, name in enumerate(channels)}
    diffs = []
    for name, path, channel_index, axes in task.planes:
        if name not in found:
            diffs.append(f"{task.key} {name}: channel not in the plate (plate channels: {list(channels)})")
            continue
        try:
            expected = _read_plane(path, channel_index, axes)
        except Exception as exc:  # noqa: BLE001
            diffs.append(f"{task.key} {name}: cannot read {path} ({type(exc).__name__}: {exc})")
            continue
        got = data[found[name]]
        if expected.shape != got.shape or expected.dtype != got.dtype:
            diffs.append(f"{task.key} {name}: {path} is {expected.shape} {expected.dtype}, "
                         f"the plate holds {got.shape} {got.dtype}")
            continue
        unequal = expected != got
        n = int(np.count_nonzero(unequal))
        if n:
            max_diff = int(np.abs(expected[unequal].astype(np.int64) - got[unequal].astype(np.int64)).max()) \
                if expected.dtype.kind in "ui" else float(np.abs(expected[unequal] - got[unequal]).max())
            diffs.append(f"{task.key} {name}: {n} of {expected.size} pixels differ from {path} "
                         f"(max |difference| {max_diff})")
    return diffs


class VerifyRequest(BaseModel):
    """The configuration of the verify stage: which plate to compare with which source."""

    model_config = ConfigDict(frozen=True)

    source: SourceConfig
    plate: Path


def _task(item: str) -> FieldCheck:
    data = json.loads(item)
    return FieldCheck(data["key"], data["well"], int(data["index"]),
                      tuple(tuple(p) for p in data["planes"]))  # type: ignore[misc]


def prepare(request: VerifyRequest, session: PlateSession) -> tuple[str, int, list[str], list[str]]:
    """Compare the structure: channels, fields missing on either side, images listed but absent.

    Returns
    -------
    tuple
        The source's path, fields to compare, differences found, notes (facts that are
        not differences).
    """
    from jumpdenoise.io.discovery import discover
    from jumpdenoise.io.ngff import field_key, plate_info

    layout = discover(request.source)
    info = plate_info(request.plate)
    diffs: list[str] = []
    if list(info.channels) != layout.channel_names:
        diffs.append(f"channels: the plate has {info.channels}, the source {layout.channel_names}")
    in_plate = set(info.field_keys())
    in_source = {(w.id, f.index) for w, f in layout.iter_fields()}
    diffs += [f"{field_key(w, f)}: field of the source missing from the plate"
              for w, f in ((w.id, f.index) for w, f in layout.iter_fields()) if (w, f) not in in_plate]
    diffs += [f"{field_key(w, f)}: field of the plate not in the source" for w, f in sorted(in_plate - in_source)]
    notes = [f"{m.well} site {m.site} {m.channel}: listed by the source but missing ({m.path})"
             for m in layout.missing]
    return layout.source_path, len(in_source & in_plate), diffs, notes


def plan(request: VerifyRequest) -> list[Unit]:
    """One unit per field present in both the source and the plate (its planes in the item)."""
    from jumpdenoise.io.discovery import discover
    from jumpdenoise.io.ngff import field_key, plate_info

    in_plate = set(plate_info(request.plate).field_keys())
    units = []
    for w, f in discover(request.source).iter_fields():
        if (w.id, f.index) in in_plate:
            key = field_key(w.id, f.index)
            planes = [(ch, ref.path, ref.channel_index, ref.axes) for ch, ref in f.planes.items()]
            item = json.dumps({"key": key, "well": w.id, "index": f.index, "planes": planes})
            units.append(Unit(stage="verify", key=key, items=[item]))
    return units


def run_one(request: VerifyRequest, unit: Unit, session: PlateSession) -> dict:
    """Compare the planes of one field; returns ``{"differences": [...]}``."""
    from jumpdenoise.io.ngff import plate_info

    info = plate_info(request.plate)
    return {"differences": check_field(str(info.path), tuple(info.channels), _task(unit.items[0]))}


def finalize(request: VerifyRequest, outcomes: list[Outcome], session: PlateSession) -> list[str]:
    """The differences of every field, in order (a failed comparison is one)."""
    diffs: list[str] = []
    for out in outcomes:
        diffs += out.value["differences"] if out.ok else [f"{out.key}: check failed ({out.error})"]
    return diffs


def verify_plate(source: SourceConfig, plate: str | Path, executor: Executor | None = None) -> VerifyReport:
    """Compare every plane of ``source`` with ``plate``, pixel for pixel.

    Runs through the stage driver (:func:`jumpdenoise.driver.run_stage`).

    Parameters
    ----------
    source
        The source plate (as for conversion).
    plate
        The OME-Zarr plate converted from it.
    executor
        Where field comparisons run (default: in this process).

    Returns
    -------
    VerifyReport
        Differences: fields missing from the plate or from the source, channel names,
        shapes, dtypes and differing pixels, each naming the field and file.
    """
    from jumpdenoise.driver import run_stage
    from jumpdenoise.io.ngff import plate_info
    from jumpdenoise.stages.base import VERIFY

    run = run_stage(VERIFY, VerifyRequest(source=source, plate=Path(plate)), executor, check=False)
    source_path, n_fields, diffs, notes = run.prepared
    return VerifyReport(plate=plate_info(plate).path, source=source_path, n_fields=n_fields,
                        differences=diffs + run.summary, notes=notes)
