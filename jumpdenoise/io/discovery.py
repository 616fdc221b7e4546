"""Find out what a source plate holds: one entry point, :func:`discover`.

``discover(SourceConfig)`` dispatches to the reader of the source's kind and returns a
:class:`~jumpdenoise.io.layout.PlateLayout`:

- ``phenix``: a Harmony export folder with ``Index.idx.xml`` / ``Index.xml`` (or the XML
  itself), read by :func:`jumpdenoise.io.phenix.read_phenix`; a folder of Phenix-named
  TIFFs without an Index file (``rRRcCCfFFpPP-chN...tiff``) is read by
  :func:`jumpdenoise.io.phenix.read_phenix_files`;
- ``load_data``: a Cell Painting Gallery CSV (:func:`jumpdenoise.io.loaddata.read_load_data`);
- ``hyperstack``: a folder of multi-channel TIFFs
  (:func:`jumpdenoise.io.hyperstack.read_hyperstacks`);
- ``auto``: guessed from the path (an XML file or a folder holding one -> phenix, a
  ``.csv`` -> load_data, a folder of TIFFs -> phenix when the names follow the Phenix
  pattern, else hyperstack).

The helpers below (plane tables, duplicate checks, plate shape, channel maps) are shared
by the readers so that every source gives layouts built the same way.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from jumpdenoise.errors import SourceError
from jumpdenoise.io.layout import (
    Channel,
    FieldLayout,
    MissingImage,
    PlaneRef,
    PlateLayout,
    WellLayout,
    row_letter,
    split_well,
    well_id,
)

__all__ = ["PlaneTable", "DirIndex", "discover", "guess_kind", "load_channel_map", "standard_plate_shape",
           "check_sources", "unconverted_sources"]

INDEX_NAMES = ("Index.idx.xml", "Index.xml", "Index.ref.xml")
PHENIX_NAME_RE = re.compile(
    r"^r(?P<row>\d+)c(?P<col>\d+)f(?P<field>\d+)p(?P<plane>\d+)-ch(?P<channel>\d+)"
    r"sk(?P<sk>\d+)fk(?P<fk>\d+)fl(?P<fl>\d+)\.tiff?$",
    re.IGNORECASE,
)
_TIFF_SUFFIXES = (".tif", ".tiff")
# Standard microplates as (rows, columns), smallest first.
_PLATE_SHAPES = ((2, 3), (3, 4), (4, 6), (6, 8), (8, 12), (16, 24), (32, 48))


def standard_plate_shape(max_row: int, max_column: int) -> tuple[int, int]:
    """Smallest standard plate (6 to 1536 wells) holding row ``max_row`` and column ``max_column``."""
    for rows, cols in _PLATE_SHAPES:
        if max_row <= rows and max_column <= cols:
            return rows, cols
    return max_row, max_column


class DirIndex:
    """Answers "does this file exist?" for many files with one directory listing per folder."""

    def __init__(self) -> None:
        self._names: dict[str, set[str]] = {}

    def exists(self, path: str) -> bool:
        """True if ``path`` names an existing entry."""
        folder, name = os.path.split(path)
        names = self._names.get(folder)
        if names is None:
            try:
                names = set(os.listdir(folder or "."))
            except OSError:
                names = set()
            self._names[folder] = names
        return name in names


class PlaneTable:
    """Collects (well, site, channel) -> plane while a reader walks its source.

    Every insertion is checked for duplicates; listed files that are not on disk go to
    :attr:`missing`.

    Parameters
    ----------
    source
        The file being read, named in errors.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.planes: dict[tuple[str, int, int], dict[str, PlaneRef]] = {}
        self.missing: list[MissingImage] = []
        self._seen: set[tuple[str, int, int, str]] = set()

    def add(self, row: str, column: int, site: int, channel: str, ref: PlaneRef, present: bool) -> None:
        """Record one plane; raise :class:`SourceError` if (well, site, channel) was seen before."""
        key = (row, column, site, channel)
        if key in self._seen:
            previous = self.planes.get((row, column, site), {}).get(channel)
            other = f" (also {previous.path})" if previous is not None else ""
            raise SourceError(
                f"{self.source}: duplicate image for well {well_id(row, column)}, field/site {site}, "
                f"channel {channel!r}: {ref.path}{other}"
            )
        self._seen.add(key)
        if present:
            self.planes.setdefault((row, column, site), {})[channel] = ref
        else:
            self.missing.append(MissingImage(well=well_id(row, column), site=site, channel=channel, path=ref.path))

    def build(
        self,
        *,
        name: str,
        source_kind: str,
        source_path: str,
        channels: list[Channel],
        shape: tuple[int, int],
        dtype: str,
        n_rows: int | None = None,
        n_columns: int | None = None,
        pixel_size_um: float | None = None,
        metadata: dict[str, str] | None = None,
        subset: list[str] | None = None,
    ) -> PlateLayout:
        """Turn the collected planes into a :class:`PlateLayout`.

        Fields get 0-based indices in order of their site ids within each well. ``subset``
        keeps only the named channels, in the given order.
        """
        channels = select_channels(channels, subset, self.source)
        keep = {c.name for c in channels}
        by_well: dict[tuple[str, int], list[tuple[int, dict[str, PlaneRef]]]] = {}
        for (row, col, site), planes in self.planes.items():
            planes = {ch: ref for ch, ref in planes.items() if ch in keep}
            if planes:
                by_well.setdefault((row, col), []).append((site, planes))
        wells = []
        for (row, col) in sorted(by_well, key=lambda rc: (len(rc[0]), rc[0], rc[1])):
            sites = sorted(by_well[(row, col)], key=lambda sp: sp[0])
            fields = [FieldLayout(index=i, site=site, planes=planes) for i, (site, planes) in enumerate(sites)]
            wells.append(WellLayout(row=row, column=col, fields=fields))
        missing_wells = [split_well(m.well) for m in self.missing]
        all_rows = [_row_number(r) for r, _ in list(by_well) + missing_wells]
        all_cols = [c for _, c in list(by_well) + missing_wells]
        if n_rows is None or n_columns is None:
            n_rows, n_columns = standard_plate_shape(max(all_rows, default=1), max(all_cols, default=1))
        return PlateLayout(
            name=name,
            source_kind=source_kind,
            source_path=source_path,
            n_rows=n_rows,
            n_columns=n_columns,
            channels=channels,
            wells=wells,
            shape=(int(shape[0]), int(shape[1])),
            dtype=dtype,
            pixel_size_um=pixel_size_um,
            missing=[m for m in self.missing if m.channel in keep],
            metadata=dict(metadata or {}),
        )


def _row_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - 64)
    return n


def row_from_number(number: int) -> str:
    """Row letter(s) of a 1-based row number (``1 -> "A"``)."""
    return row_letter(int(number))


def select_channels(channels: list[Channel], subset: Iterable[str] | None, source: str) -> list[Channel]:
    """Keep the channels named in ``subset`` (in that order); all when ``subset`` is None."""
    if subset is None:
        return list(channels)
    by_name = {c.name: c for c in channels}
    unknown = [s for s in subset if s not in by_name]
    if unknown:
        raise SourceError(f"{source}: no channel named {unknown} (channels: {sorted(by_name)})")
    return [by_name[s] for s in subset]


def load_channel_map(path: str | Path) -> dict[str, str]:
    """Read a channel-name map from a pe2loaddata ``config.yml`` or a flat JSON/YAML mapping.

    A pe2loaddata config maps Phenix channel names to ``Orig<Stain>`` column suffixes under
    ``channels:``; the ``Orig`` prefix is dropped (``"HOECHST 33342" -> "DNA"``). A flat
    mapping such as ``{"ch1": "Mito"}`` (the Gallery's ``channel_table.json``) is taken as is.

    Raises
    ------
    SourceError
        The file is missing, unreadable, or not a mapping of names to names.
    """
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SourceError(f"{p}: cannot read channel map ({type(exc).__name__}: {exc})") from None
    if isinstance(data, dict) and isinstance(data.get("channels"), dict):
        data = data["channels"]
    if not isinstance(data, dict) or not data:
        raise SourceError(f"{p}: expected a mapping of channel names (or a 'channels:' section)")
    out = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise SourceError(f"{p}: channel {key!r} maps to {value!r}, expected a name")
        out[str(key)] = value[4:] if value.startswith("Orig") and len(value) > 4 else value
    return out


def guess_kind(path: Path) -> str:
    """Guess the source kind of ``path`` (see the module docstring)."""
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".xml":
            return "phenix"
        if suffix == ".csv":
            return "load_data"
        raise SourceError(f"{path}: cannot tell the source kind (expected an Index XML, a .csv or a folder)")
    if find_index(path) is not None:
        return "phenix"
    names = os.listdir(path)
    tiffs = [n for n in names if n.lower().endswith(_TIFF_SUFFIXES)]
    if tiffs and any(PHENIX_NAME_RE.match(n) for n in tiffs):
        return "phenix"
    if tiffs:
        return "hyperstack"
    if (path / "Images").is_dir():
        return guess_kind(path / "Images")
    raise SourceError(f"{path}: no Index XML, load_data CSV or TIFF files found")


def find_index(folder: Path) -> Path | None:
    """The Index XML in ``folder`` (or in its ``Images/`` subfolder), if any."""
    for base in (folder, folder / "Images", folder / "images"):
        for name in INDEX_NAMES:
            if (base / name).is_file():
                return base / name
    return None


def discover(source) -> PlateLayout:
    """Read the source plate described by ``source`` (a :class:`SourceConfig`).

    Parameters
    ----------
    source
        :class:`jumpdenoise.config.SourceConfig`.

    Returns
    -------
    PlateLayout
        Wells, fields, channels (named by the source, or by ``channel_map``), the file of
        every plane, and the images listed but missing.

    Raises
    ------
    SourceError
        The source cannot be read, holds duplicates, lists nothing readable, or (with
        ``require_files``) lists missing files. The message names the file at fault.
    """
    from jumpdenoise.io.hyperstack import read_hyperstacks
    from jumpdenoise.io.loaddata import read_load_data
    from jumpdenoise.io.phenix import read_phenix, read_phenix_files

    path = Path(source.path)
    kind = guess_kind(path) if source.kind == "auto" else source.kind
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if kind == "phenix":
        channel_map = load_channel_map(source.channel_map_file) if source.channel_map_file else {}
        channel_map.update(source.channel_map)
        index = path if path.is_file() else find_index(path)
        if index is not None:
            layout = read_phenix(index, plate_name=source.plate_name, channels=source.channels, channel_map=channel_map)
        else:
            folder = path / "Images" if (path / "Images").is_dir() and not _has_tiffs(path) else path
            layout = read_phenix_files(folder, plate_name=source.plate_name, channels=source.channels, channel_map=channel_map)
    elif kind == "load_data":
        layout = read_load_data(path, path_rewrite=source.path_rewrite, plate_name=source.plate_name, channels=source.channels)
    elif kind == "hyperstack":
        if not source.filename_pattern:
            raise SourceError(
                f"{path}: source.filename_pattern is required for hyperstack folders "
                "(a regex with named groups 'well' (or 'row' and 'column') and 'field')"
            )
        layout = read_hyperstacks(
            path,
            filename_pattern=source.filename_pattern,
            channel_names=source.channel_names,
            axes=source.axes,
            plate_name=source.plate_name,
            channels=source.channels,
        )
    else:  # pragma: no cover - pydantic restricts the values
        raise SourceError(f"unknown source kind {kind!r}")
    if source.require_files and layout.missing:
        shown = "\n".join(f"  {m.well} site {m.site} {m.channel}: {m.path}" for m in layout.missing[:10])
        more = f"\n  ... and {len(layout.missing) - 10} more" if len(layout.missing) > 10 else ""
        raise SourceError(f"{path}: {len(layout.missing)} listed image(s) are missing:\n{shown}{more}")
    return layout


def unconverted_sources(layout: PlateLayout) -> list[str]:
    """What the source lists or holds that will not become a field of the plate, one line each.

    A field (well, site) whose every image file is missing (listed in ``layout.missing``;
    a field missing only some images fails at conversion instead, naming the file), and a
    hyperstack file whose name does not match the filename pattern.
    """
    fields = {(w.id, f.site) for w, f in layout.iter_fields()}
    dropped: dict[tuple[str, int], list[str]] = {}
    for m in layout.missing:
        if (m.well, m.site) not in fields:
            dropped.setdefault((m.well, m.site), []).append(m.path)
    lines = [f"{well} site {site}: all {len(paths)} image file(s) missing (e.g. {paths[0]})"
             for (well, site), paths in dropped.items()]
    unmatched = [n for n in layout.metadata.get("unmatched_names", "").split("\n") if n]
    pattern = layout.metadata.get("filename_pattern")
    lines += [f"{name}: file name does not match filename_pattern {pattern!r}" for name in unmatched]
    n_unmatched = int(layout.metadata.get("unmatched_files", "0") or 0)
    if n_unmatched > len(unmatched):
        lines.append(f"... and {n_unmatched - len(unmatched)} more file(s) not matching filename_pattern {pattern!r}")
    return lines


def check_sources(layout: PlateLayout, allow_missing: bool) -> None:
    """Refuse a source of which something would not become a field, unless ``allow_missing``.

    Raises
    ------
    SourceError
        If no image file of the source exists (always), or, unless ``allow_missing``,
        listing each field whose images are all missing and each file not matching the
        hyperstack filename pattern.
    """
    if not layout.wells:
        shown = "".join(f"\n  {m.well} site {m.site} {m.channel}: {m.path}" for m in layout.missing[:5])
        raise SourceError(f"{layout.source_path}: no image file of the source exists ({len(layout.missing)} listed "
                          f"image(s) missing; check the paths, or source.path_rewrite){shown}")
    dropped = unconverted_sources(layout)
    if dropped and not allow_missing:
        shown = "".join(f"\n  {line}" for line in dropped[:20])
        more = f"\n  ... and {len(dropped) - 20} more" if len(dropped) > 20 else ""
        raise SourceError(f"{layout.source_path}: {len(dropped)} source item(s) would not become a field of the "
                          f"plate:{shown}{more}\nrestore them, or set convert.allow_missing: true to convert the rest")


def _has_tiffs(folder: Path) -> bool:
    return any(n.lower().endswith(_TIFF_SUFFIXES) for n in os.listdir(folder))
