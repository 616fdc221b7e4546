"""Convert stage: a source plate (TIFFs) -> a raw OME-Zarr HCS plate with statistics.

The four stage functions (see :mod:`jumpdenoise.stages.base`) take the root
:class:`~jumpdenoise.config.JumpDenoiseConfig`; the source is ``config.source``, the
output ``config.paths.raw_plate``.

Safety and resume:

- :func:`prepare` writes all metadata (groups, empty arrays, ``layout.json`` last) in one
  process before any pixel. A rerun on a plate prepared from the same layout and storage
  settings resumes instead of refusing.
- A unit owns whole fields (each field is its own array), reads their TIFFs once, writes
  them, computes their partial statistics from the same in-memory data and only then
  marks each field done. A field that fails is never marked done, so a rerun (after any
  crash, even SIGKILL) redoes exactly the fields without a marker, which gives the same
  bytes as an uninterrupted conversion. Files are written to temporaries renamed into
  place; those a killed run leaves behind are removed when their field is redone (chunks)
  or when the plate is resumed (markers).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from jumpdenoise.errors import ConfigError, JumpDenoiseError, OutputExistsError, UnitFailures
from jumpdenoise.io.layout import FieldLayout, PlateLayout
from jumpdenoise.io.ngff_markers import DONE, FAILURES_FILE, LAYOUT_FILE, MISSING_IMAGES_CSV, sidecar_path
from jumpdenoise.stages.base import Unit
from jumpdenoise.stages.convert_report import (  # noqa: F401 - re-exported
    ConvertReport, DonePartials, short_error, write_missing_report,
)

if TYPE_CHECKING:
    from jumpdenoise.config import JumpDenoiseConfig
    from jumpdenoise.executors.base import Executor, Outcome
    from jumpdenoise.stages.session import PlateSession

STAGE = "convert"
MODULE = "jumpdenoise.stages.convert"


def plate_path(config: JumpDenoiseConfig) -> Path:
    """The output plate of the conversion (``config.paths.raw_plate``)."""
    return Path(config.paths.raw_plate)


def _storage(config: JumpDenoiseConfig) -> dict:
    from jumpdenoise.io.ngff_meta import STORAGE_KEYS

    dumped = config.convert.model_dump()
    return {k: dumped.get(k) for k in STORAGE_KEYS}


def _structure(layout: PlateLayout, done: set[str]) -> dict:
    """What must not change for a plate to be resumed: everything but the list of missing
    images and the files of fields not yet done (a file restored since is welcome)."""
    data = layout.model_dump(mode="json", exclude={"missing"})
    for well in data["wells"]:
        wid = f"{well['row']}{int(well['column']):02d}"
        for fld in well["fields"]:
            if f"{wid}-{fld['index']}" not in done:
                fld["planes"] = None
    return data


def _resumable(out: Path, layout: PlateLayout, config: JumpDenoiseConfig) -> str | None:
    """Why ``out`` cannot be resumed from ``layout`` (``None`` when it can)."""
    from jumpdenoise.errors import PlateError
    from jumpdenoise.io.ngff import done_keys, plate_info

    saved = sidecar_path(out, LAYOUT_FILE)
    if not saved.is_file():
        return f"it was not prepared by jumpdenoise convert (no {saved.relative_to(out)})"
    try:
        previous = PlateLayout.load(saved)
    except (OSError, ValueError) as exc:
        return f"its {saved} is unreadable ({exc})"
    done = done_keys(out)
    if _structure(previous, done) != _structure(layout, done):
        return f"it was converted from another source layout ({previous.source_path})"
    try:
        info = plate_info(out)
    except PlateError as exc:
        return str(exc)
    if info.attrs.get("storage") != _storage(config):
        return f"it was written with other storage settings ({info.attrs.get('storage')})"
    return None


def prepare(config: JumpDenoiseConfig, session: PlateSession) -> PlateLayout:
    """Discover the source and create the plate's metadata (one process, before any pixel).

    An existing output is replaced when ``config.convert.overwrite``; it is resumed when it
    was prepared from the same layout with the same storage settings; otherwise refused.
    The metadata are written in a staging folder renamed into place when complete.

    ``session`` is not used (the layout is parsed by the units, once per session).

    Returns
    -------
    PlateLayout
        The discovered source layout.

    Raises
    ------
    ConfigError
        If the configuration has no ``source``.
    OutputExistsError
        If the output exists, cannot be resumed and ``overwrite`` is false.
    UnsafeOutputError
        If ``overwrite`` would remove something else than a jumpdenoise plate, or a folder
        holding source images.
    """
    from jumpdenoise.io.discovery import check_sources, discover
    from jumpdenoise.io.ngff import create_plate
    from jumpdenoise.io.output_guard import check_apart, check_removable, remove_output

    if config.source is None:
        raise ConfigError("source: the convert stage needs a source plate (source.path)")
    layout = discover(config.source)
    check_sources(layout, config.convert.allow_missing)  # before anything is written
    out = plate_path(config)
    if out.exists() and not config.convert.overwrite:
        why_not = _resumable(out, layout, config)
        if why_not is not None:
            raise OutputExistsError(f"{out} ({why_not})")
        saved = sidecar_path(out, LAYOUT_FILE)  # the workers read the files of this run
        staged = saved.with_name(".layout.json.tmp")
        layout.save(staged)
        os.replace(staged, saved)
        _remove_marker_temporaries(out)
        return layout
    # All metadata are written into a hidden sibling folder, then renamed into place: a
    # plate under ``out`` is either fully prepared or absent, even after a SIGKILL.
    if out.exists() or out.is_symlink():  # overwrite: only a plate of ours, holding no source file
        check_removable(out, "plate")
        check_apart(out, protected={Path(ref.path).parent for _, fld in layout.iter_fields()
                                    for ref in fld.planes.values()})
    staging = out.with_name(f".{out.name}.preparing")
    if staging.exists():  # left by an interrupted prepare
        shutil.rmtree(staging)
    create_plate(staging, layout, config.convert, kind="raw", track_completion=True)
    if out.exists() or out.is_symlink():
        remove_output(out, "plate")
    os.replace(staging, out)
    return layout


def _remove_marker_temporaries(out: Path) -> None:
    """Remove the temporary marker files (``.KEY.*.tmp``) of a run killed while writing them."""
    folder = sidecar_path(out, DONE)
    if folder.is_dir():
        for name in os.listdir(folder):
            if name.startswith(".") and name.endswith(".tmp"):
                (folder / name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- worker side

def load_layout(plate: str | Path,
                session: PlateSession | None = None) -> tuple[PlateLayout, dict[tuple[str, int], FieldLayout]]:
    """The layout saved with ``plate`` and its fields by ``(well, index)`` (kept in ``session``
    while the file stays the same, when given)."""
    path = sidecar_path(plate, LAYOUT_FILE)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise JumpDenoiseError(f"{path}: missing; run the convert stage's prepare first") from None

    def parse() -> tuple[PlateLayout, dict[tuple[str, int], FieldLayout]]:
        layout = PlateLayout.load(path)
        return layout, {(w.id, f.index): f for w, f in layout.iter_fields()}

    if session is None:
        return parse()
    return session.cached(("layout", str(path), st.st_mtime_ns, st.st_size), parse)


def plan(config: JumpDenoiseConfig) -> list[Unit]:
    """Units of ``config.convert.fields_per_unit`` fields, skipping fields already done.

    From here on the plate records its fields' completion (a field without a done marker is
    not complete, for every reader).

    Raises
    ------
    SourceError
        If some of what the source lists or holds would not become a field
        (:func:`~jumpdenoise.io.discovery.check_sources`) and ``convert.allow_missing``
        is false; nothing is converted then.
    """
    from jumpdenoise.io.discovery import check_sources
    from jumpdenoise.io.ngff import done_keys, field_key
    from jumpdenoise.io.ngff_markers import track_completion

    out = plate_path(config)
    layout, _ = load_layout(out)
    track_completion(out)
    check_sources(layout, config.convert.allow_missing)
    done = done_keys(out)
    todo = [(w.id, f.index) for w, f in layout.iter_fields() if field_key(w.id, f.index) not in done]
    n = config.convert.fields_per_unit
    units = []
    for i in range(0, len(todo), n):
        group = todo[i:i + n]
        key = field_key(*group[0]) + (f"+{len(group) - 1}" if len(group) > 1 else "")
        units.append(Unit(stage=STAGE, key=key, items=[f"{w}/{f}" for w, f in group]))
    return units


def _file_bytes(field: FieldLayout) -> int:
    return sum(os.stat(p).st_size for p in {ref.path for ref in field.planes.values()})


def _check_listed_files(layout: PlateLayout, well: str, fld: FieldLayout) -> None:
    """Raise :class:`ImageError` naming the file when a channel's image is listed but absent."""
    from jumpdenoise.errors import ImageError

    absent = [ch for ch in layout.channel_names if ch not in fld.planes]
    if not absent:
        return
    for m in layout.missing:
        if m.well == well and m.site == fld.site and m.channel in absent:
            raise ImageError(m.path, f"listed by the source but missing (channel {m.channel!r}, "
                                     f"well {well}, site {fld.site}): field not converted")


def run_one(config: JumpDenoiseConfig, unit: Unit, session: PlateSession) -> dict:
    """Convert the fields of one unit: read TIFFs, write the field, stats, then mark done.

    Every field of the unit is attempted; those that fail are not marked done and are
    reported together in the raised error.

    Returns
    -------
    dict
        ``{"fields": [field keys converted], "bytes": TIFF bytes read}``.

    Raises
    ------
    JumpDenoiseError
        If any field failed (the message names each field and file at fault).
    """
    import zarr

    from jumpdenoise.compute.stats import field_partial
    from jumpdenoise.io.ngff import field_key, mark_done, write_field
    from jumpdenoise.io.tiff import read_source_field

    out = plate_path(config)
    layout, fields = load_layout(out, session)
    channels = layout.channel_names
    converted, errors, nbytes = [], [], 0
    for item in unit.items:
        well, index = item.split("/")
        key = field_key(well, int(index))
        fld = fields[(well, int(index))]
        try:
            _check_listed_files(layout, well, fld)
            data = read_source_field(fld, channels, tuple(layout.shape), layout.dtype)
            with zarr.config.set({"array.write_empty_chunks": True}):  # skips a full-chunk
                write_field(out, well, int(index), data)                # comparison: 2x faster
            partial = field_partial(data, channels)
            del data
            mark_done(out, key, partial)
            nbytes += _file_bytes(fld)
            converted.append(key)
        except JumpDenoiseError as exc:
            if len(unit.items) == 1:
                raise
            errors.append(f"{key}: {exc}")
    if errors:
        raise JumpDenoiseError(f"{len(errors)} of {len(unit.items)} field(s) failed in unit {unit.key}:\n"
                               + "\n".join(errors))
    return {"fields": converted, "bytes": nbytes}


def warm_up_worker() -> None:
    """Import what :func:`run_one` uses (run on each worker before the first unit)."""
    import imagecodecs  # noqa: F401
    import tifffile  # noqa: F401
    import zarr  # noqa: F401

    import jumpdenoise.compute.stats  # noqa: F401
    import jumpdenoise.io.ngff  # noqa: F401
    import jumpdenoise.io.tiff  # noqa: F401


# ----------------------------------------------------------------------------- finalize


def finalize(config: JumpDenoiseConfig, results: list[Outcome], session: PlateSession) -> dict:
    """Merge the partial statistics of every done field, write failures and missing images.

    Writes the statistics (attributes, ``statistics.csv``, omero windows),
    ``.jumpdenoise/failures.json`` (unit key -> error of this run) and
    ``.jumpdenoise/missing_images.csv`` (images the source lists without a file).

    Returns
    -------
    dict
        ``{"done": n fields done, "failures": {key: short error}}``.
    """
    from jumpdenoise.compute.stats import merge_partials
    from jumpdenoise.io.ngff import done_keys, write_statistics

    out = plate_path(config)
    layout, _ = load_layout(out, session)
    done = done_keys(out)
    order = [f"{w.id}-{f.index}" for w, f in layout.iter_fields()]
    done_in_order = [k for k in order if k in done]
    if done_in_order:
        write_statistics(out, merge_partials(DonePartials(out, done_in_order), layout.channel_names))
    failures = {o.key: short_error(o.error) for o in results if not o.ok}
    sidecar_path(out, FAILURES_FILE).write_text(json.dumps(
        {o.key: {"error": short_error(o.error), "traceback": o.error, "log": o.log}
         for o in results if not o.ok}, indent=1))
    write_missing_report(layout.missing, sidecar_path(out, MISSING_IMAGES_CSV))
    return {"done": len(done_in_order), "failures": failures}


# ----------------------------------------------------------------------------- convenience


@contextlib.contextmanager
def in_process_context(config: JumpDenoiseConfig) -> Iterator[None]:
    """Held by the driver while units run as threads of its process (a threaded Dask cluster).

    :func:`run_one` sets ``write_empty_chunks`` for its writes; set here too, units running
    as threads of this process never see it reset by another unit's exit from the setting.
    """
    import zarr

    with zarr.config.set({"array.write_empty_chunks": True}):
        yield


def convert(config: JumpDenoiseConfig, executor: Executor | None = None, *,
            echo: Callable[[str], None] | None = None,
            wait_s: float = 0.0) -> ConvertReport:
    """Convert ``config.source`` to ``config.paths.raw_plate``: prepare, run units, finalize.

    Runs through the stage driver (:func:`jumpdenoise.driver.run_stage`), like the pipeline.

    Parameters
    ----------
    config
        Root configuration (``source``, ``paths.raw_plate``, ``convert``, ``executor``).
    executor
        Where units run; default: ``make_executor(config.executor, CONVERT)`` (closed
        afterwards; a Dask LocalCluster made for conversion runs its workers as threads of
        this process: every costly step of a unit releases the GIL).
    echo
        Called with the report's lines (``already complete`` when nothing was left to convert);
        ``None``: silent.
    wait_s
        How long to wait when another run holds the output (default: refuse at once).

    Returns
    -------
    ConvertReport
        Counts, missing images and throughput.

    Raises
    ------
    UnitFailures
        After finalize, when some units failed (the other fields are converted and the
        statistics cover them); the message lists each failure.
    """
    from jumpdenoise.driver import run_stage
    from jumpdenoise.stages.base import CONVERT

    run = run_stage(CONVERT, config, executor, check=False, wait_s=wait_s)
    layout, units, outcomes, summary = run.prepared, run.units, run.outcomes, run.summary or {}
    n_fields = sum(len(w.fields) for w in layout.wells)
    todo = sum(len(u.items) for u in units)
    report = ConvertReport(
        plate=plate_path(config), n_fields=n_fields, skipped=n_fields - todo,
        converted=summary.get("done", 0) - (n_fields - todo),
        failures=run.failures, missing=list(layout.missing),
        bytes_read=sum(o.value["bytes"] for o in outcomes if o.ok),
        seconds=run.seconds,
    )
    if echo is not None and run.already_complete:
        echo(f"already complete: {report.plate} (all {n_fields} field(s) converted earlier; nothing to do)")
    elif echo is not None:
        echo(str(report))
    if report.failures:
        raise UnitFailures(STAGE, report.failures)
    return report
