"""The stats stage: recompute per-channel statistics of any OME-Zarr plate, one unit per well.

It accepts the full :class:`~jumpdenoise.config.JumpDenoiseConfig` (then it works on
``config.paths.raw_plate`` and keeps statistics already stored there, e.g. by the convert
stage) or a :class:`StatsRequest` naming any plate (recomputed unless ``recompute=False``). Each unit reads the
fields of one well and stores the well's partial statistics in a marker
(``.jumpdenoise/stats/<WELL>.npz``), so an interrupted run resumes; ``finalize`` merges
them, writes them with :func:`~jumpdenoise.io.ngff.write_statistics` and removes the
markers (the next run recomputes everything).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from jumpdenoise.errors import PlateError
from jumpdenoise.io.ngff_markers import STATS_NAMESPACE
from jumpdenoise.stages.base import Unit
from jumpdenoise.stages.session import PlateSession

STAGE = "stats"
NAMESPACE = STATS_NAMESPACE


class StatsRequest(BaseModel):
    """Accepted in place of the full configuration: compute statistics of ``plate``.

    Attributes
    ----------
    plate
        Any OME-Zarr HCS plate.
    recompute
        Recompute even when the plate already holds statistics.
    """

    model_config = ConfigDict(frozen=True)

    plate: Path
    recompute: bool = True


def plate_of(config: Any) -> Path:
    """The plate a config points the stage at: ``config.plate`` or ``config.paths.raw_plate``."""
    plate = getattr(config, "plate", None)
    if plate is None and getattr(config, "paths", None) is not None:
        plate = config.paths.raw_plate
    if plate is None:
        raise PlateError(f"no plate to compute statistics of in {type(config).__name__}")
    return Path(plate)


def _keep_existing(config: Any, plate: Path) -> bool:
    """Whether stored statistics are kept (nothing to compute)."""
    from jumpdenoise.io.ngff import done_keys, plate_info

    recompute = getattr(config, "recompute", False)
    return (not recompute and plate_info(plate).statistics is not None
            and not done_keys(plate, NAMESPACE))


def prepare(config: Any, session: PlateSession) -> None:
    """Check that the plate opens (raises :class:`PlateError` naming it otherwise)."""
    from jumpdenoise.io.ngff import plate_info

    plate_info(plate_of(config))


def plan(config: Any) -> list[Unit]:
    """One unit per well whose statistics are not yet computed in this run."""
    from jumpdenoise.io.ngff import done_keys, plate_info

    plate = plate_of(config)
    if _keep_existing(config, plate):
        return []
    done = done_keys(plate, NAMESPACE)
    return [Unit(stage=STAGE, key=w, items=[f"{w}/{f}" for f in fields])
            for w, fields in plate_info(plate).wells.items() if w not in done]


def run_one(config: Any, unit: Unit, session: PlateSession) -> dict:
    """Read the fields of one well, store their merged statistics in the well's marker."""
    from jumpdenoise.compute.stats import ChannelStats, merge_stats, stats_to_partial
    from jumpdenoise.io.ngff import mark_done, plate_info, read_field

    plate = plate_of(config)
    info = plate_info(plate)
    per_field = []
    for item in unit.items:
        well, field = item.split("/")
        data = read_field(plate, well, int(field))
        per_field.append({ch: ChannelStats(data.dtype).update(data[i]) for i, ch in enumerate(info.channels)})
    merged = merge_stats(per_field, info.channels)
    mark_done(plate, unit.key, stats_to_partial(merged), namespace=NAMESPACE)
    return {"well": unit.key, "fields": len(unit.items)}


def finalize(config: Any, results: list[dict] | None, session: PlateSession) -> dict:
    """Merge the well markers into plate statistics and write them; returns the statistics.

    Raises
    ------
    PlateError
        If some well has no marker (its unit failed or was not run).
    """
    from jumpdenoise.compute.stats import merge_partials
    from jumpdenoise.io.ngff import clear_done, done_keys, plate_info, write_statistics

    plate = plate_of(config)
    info = plate_info(plate)
    if _keep_existing(config, plate):
        return info.statistics
    done = done_keys(plate, NAMESPACE)
    missing = [w for w in info.wells if w not in done]
    if missing:
        raise PlateError(f"{plate}: statistics missing for well(s) {', '.join(missing)}; rerun the stats stage")
    stats = merge_partials(_Markers(plate, list(info.wells)), info.channels)
    write_statistics(plate, stats)
    clear_done(plate, None, NAMESPACE)
    return stats


class _Markers(Mapping):
    """Well markers of the stats stage, loaded one at a time (bounded memory when merging)."""

    def __init__(self, plate: Path, wells: list[str]) -> None:
        self.plate, self.wells = plate, wells

    def __getitem__(self, well: str) -> dict:
        from jumpdenoise.io.ngff import load_done

        return load_done(self.plate, well, NAMESPACE)

    def __iter__(self):
        return iter(self.wells)

    def __len__(self) -> int:
        return len(self.wells)


def compute_statistics(plate: str | Path, executor=None) -> dict:
    """Recompute and store the statistics of any OME-Zarr plate (raw or denoised).

    Parameters
    ----------
    plate
        The plate.
    executor
        A :class:`~jumpdenoise.executors.base.Executor` (default: in this process); the
        stage driver (:func:`jumpdenoise.driver.run_stage`) runs the units on it.

    Returns
    -------
    dict
        The statistics written (structure in ``docs/FORMATS.md``).

    Raises
    ------
    UnitFailures
        If some wells could not be read (the others' markers are kept for a rerun).
    """
    from jumpdenoise.driver import run_stage
    from jumpdenoise.stages.base import STATS

    return run_stage(STATS, StatsRequest(plate=Path(plate)), executor).summary
