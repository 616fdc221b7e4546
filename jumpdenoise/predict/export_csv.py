"""The load_data CSV written next to exported TIFFs (see :mod:`jumpdenoise.predict.export_tiff`).

Two cases:

- the plate was converted from a load_data CSV that is still readable: the same columns and
  rows, with ``FileName_Orig<Ch>`` / ``PathName_Orig<Ch>`` (and ``URL_Orig<Ch>``) of each
  exported channel pointing to the new files; every other column (illumination functions,
  ``Metadata_Source``, ``Metadata_Batch`` ...) is carried over;
- any other source (Phenix, hyperstacks): ``load_data.csv`` with ``FileName_Orig<Ch>``,
  ``PathName_Orig<Ch>`` per channel, then ``Metadata_Plate``, ``Metadata_Well``,
  ``Metadata_Site``.

In both cases :class:`ExtraColumns` adds (or overrides) ``Metadata_<Key>`` columns and
``FileName_Illum<Ch>`` / ``PathName_Illum<Ch>`` columns for illumination functions.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from jumpdenoise.errors import ConfigError, SourceError

__all__ = ["ExtraColumns", "column_name", "rewrite_load_data", "write_load_data"]

#: JUMP's illumination-function file names: ``<plate>_Illum<channel>.npy``.
DEFAULT_ILLUM_PATTERN = "{plate}_Illum{channel}.npy"


def column_name(channel: str) -> str:
    """A channel name reduced to what a CellProfiler column name may hold."""
    return re.sub(r"\W", "", channel.replace(" ", "_")) or "Channel"


@dataclass
class ExtraColumns:
    """Columns added to (or overridden in) every row of the load_data CSV.

    Attributes
    ----------
    metadata
        ``{"Source": "source_4", "Batch": "2021_04_26_Batch1"}`` -> ``Metadata_Source``,
        ``Metadata_Batch`` with these values.
    illum_dir
        Folder holding the illumination functions; ``None``: no illumination columns added.
    illum_pattern
        File name of a channel's illumination function; ``{plate}`` and ``{channel}`` (the
        channel's column name, e.g. ``DNA``) are filled in.
    """

    metadata: dict[str, str] = field(default_factory=dict)
    illum_dir: Path | None = None
    illum_pattern: str = DEFAULT_ILLUM_PATTERN

    def __post_init__(self) -> None:
        bad = [k for k in self.metadata if not k or column_name(k) != k]
        if bad:
            raise ConfigError(f"--metadata: keys {bad} are not valid column names (letters, digits, _)")

    def columns(self, plate: str, channels: list[str]) -> dict[str, str]:
        """Column -> value for one plate.

        Raises
        ------
        SourceError
            If an illumination function named by the pattern is not in ``illum_dir``.
        """
        out = {f"Metadata_{k}": v for k, v in self.metadata.items()}
        if self.illum_dir is None:
            return out
        folder = Path(self.illum_dir).expanduser().resolve()
        missing = []
        for ch in channels:
            col = column_name(ch)
            try:
                name = self.illum_pattern.format(plate=plate, channel=col)
            except (KeyError, IndexError) as exc:
                raise ConfigError(f"--illum-pattern {self.illum_pattern!r}: unknown field {exc} "
                                  "(use {plate} and {channel})") from None
            if not (folder / name).is_file():
                missing.append(name)
            out[f"FileName_Illum{col}"], out[f"PathName_Illum{col}"] = name, str(folder)
        if missing:
            raise SourceError(f"--illum-dir {folder}: illumination function(s) {missing} not found")
        return out


def rewrite_load_data(src: Path, out: Path, written: dict, plate: str, extra: dict[str, str]) -> Path:
    """Copy the source load_data CSV ``src`` into ``out`` with the exported rows re-pointed.

    ``written`` maps (well, site) to {channel: exported file name}; rows of other fields (and
    of other plates of a multi-plate CSV) are dropped.
    """
    from jumpdenoise.io.layout import split_well, well_id

    with open(src, newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    header += [c for c in extra if c not in header]
    target = out / src.name
    multi_plate = len({r.get("Metadata_Plate") for r in rows}) > 1
    folder = str(out.resolve())
    with open(target, "w", newline="") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        for row in rows:
            try:
                key = (well_id(*split_well(row.get("Metadata_Well") or "")), int(float(row.get("Metadata_Site") or "")))
            except ValueError:
                continue
            names = written.get(key)
            if names is None or (multi_plate and row.get("Metadata_Plate") != plate):
                continue
            for ch, name in names.items():
                if f"FileName_Orig{ch}" in row:
                    row[f"FileName_Orig{ch}"] = name
                if f"PathName_Orig{ch}" in row:
                    row[f"PathName_Orig{ch}"] = folder
                if f"URL_Orig{ch}" in row:
                    row[f"URL_Orig{ch}"] = (out / name).resolve().as_uri()
            writer.writerow({**row, **extra})
    return target


def write_load_data(target: Path, out: Path, written: dict, channels: list[str], plate: str,
                    extra: dict[str, str]) -> Path:
    """Write a new load_data CSV listing the exported TIFFs (sources without a load_data CSV)."""
    cols = [c for ch in channels for c in (f"FileName_Orig{column_name(ch)}", f"PathName_Orig{column_name(ch)}")]
    cols += ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
    cols += [c for c in extra if c not in cols]
    folder = str(out.resolve())
    with open(target, "w", newline="") as fh:
        writer = csv.DictWriter(fh, cols)
        writer.writeheader()
        for (well, site), names in sorted(written.items()):
            row = {c: v for ch in channels for c, v in ((f"FileName_Orig{column_name(ch)}", names[ch]),
                                                        (f"PathName_Orig{column_name(ch)}", folder))}
            row.update({"Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": site})
            writer.writerow({**row, **extra})
    return target
