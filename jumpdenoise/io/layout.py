"""The typed description of a source plate, shared by every reader and the converter.

A :class:`PlateLayout` is what discovery (Phenix Index XML, load_data CSV, TIFF
hyperstack folder) produces and what the convert stage consumes. It holds names and
file references only, never pixels, and is small enough to pickle to every worker.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

_WELL_RE = re.compile(r"^([A-Z]{1,2})(\d{1,3})$")


def well_id(row: str, column: int) -> str:
    """Return the canonical well id, e.g. ``well_id("A", 1) == "A01"``."""
    return f"{row}{int(column):02d}"


def split_well(well: str) -> tuple[str, int]:
    """Split a well id such as ``"A01"`` or ``"a1"`` into ``("A", 1)``.

    Raises
    ------
    ValueError
        If ``well`` is not a row letter (or two) followed by a column number.
    """
    m = _WELL_RE.match(well.strip().upper())
    if not m:
        raise ValueError(f"not a well id: {well!r} (expected e.g. 'A01')")
    return m.group(1), int(m.group(2))


def row_letter(index: int) -> str:
    """Row letter(s) of a 1-based row number: 1 -> 'A', 16 -> 'P', 27 -> 'AA'."""
    if index < 1:
        raise ValueError(f"row number must be >= 1, got {index}")
    letters = string.ascii_uppercase
    if index <= 26:
        return letters[index - 1]
    return letters[(index - 1) // 26 - 1] + letters[(index - 1) % 26]


class Channel(BaseModel):
    """One channel of the plate, named by the source.

    Attributes
    ----------
    name
        Name used everywhere downstream (e.g. ``"DNA"`` from a load_data column
        ``FileName_OrigDNA``, or ``"HOECHST 33342"`` from an Index XML).
    source_id
        The channel's id in the source (Phenix ``ChannelID``, hyperstack index), as text.
    excitation_nm, emission_nm
        Wavelengths when the source gives them.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    source_id: str
    excitation_nm: float | None = None
    emission_nm: float | None = None


class PlaneRef(BaseModel):
    """Where one (well, field, channel) plane lives.

    Attributes
    ----------
    path
        Absolute path of the file holding the plane.
    channel_index
        Index of the channel inside a multi-channel file (hyperstacks); ``None`` for a
        file that holds exactly one 2-D plane.
    axes
        Axis order of the file's array as read by tifffile (``"YX"``, ``"CYX"``, ``"YXC"``).
    """

    model_config = ConfigDict(frozen=True)

    path: str
    channel_index: int | None = None
    axes: str = "YX"


class FieldLayout(BaseModel):
    """One field of view (site) of one well.

    Attributes
    ----------
    index
        0-based position of the field within its well (the OME-Zarr field path).
    site
        The source's own field/site id (Phenix ``FieldID``, load_data ``Metadata_Site``).
    planes
        Channel name -> plane reference, for every channel present on disk.
    """

    index: int
    site: int
    planes: dict[str, PlaneRef]


class WellLayout(BaseModel):
    """One well: its row letter, column number and fields."""

    row: str
    column: int
    fields: list[FieldLayout]

    @property
    def id(self) -> str:
        """Canonical well id, e.g. ``"A01"``."""
        return well_id(self.row, self.column)


class MissingImage(BaseModel):
    """An image the source lists but whose file is not on disk."""

    well: str
    site: int
    channel: str
    path: str


class PlateLayout(BaseModel):
    """Everything needed to convert a source plate, without its pixels.

    Attributes
    ----------
    name
        Plate name (barcode), e.g. ``"BR00117010"``.
    source_kind
        ``"phenix"``, ``"load_data"`` or ``"hyperstack"``.
    source_path
        The Index XML, CSV or folder the layout was read from.
    n_rows, n_columns
        Plate shape (e.g. 16 x 24 for 384 wells); from the source when it says, else
        the smallest standard plate holding the wells present.
    channels
        Channels in output order, named by the source.
    wells
        Wells present, sorted by (row, column).
    shape
        (y, x) size of every plane.
    dtype
        numpy dtype name of every plane (e.g. ``"uint16"``).
    pixel_size_um
        Pixel size in micrometres, when known.
    missing
        Images listed by the source whose files are missing.
    metadata
        Extra source facts worth keeping (instrument, measurement id, ...).
    """

    name: str
    source_kind: str
    source_path: str
    n_rows: int = Field(ge=1)
    n_columns: int = Field(ge=1)
    channels: list[Channel]
    wells: list[WellLayout]
    shape: tuple[int, int]
    dtype: str
    pixel_size_um: float | None = None
    missing: list[MissingImage] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, value: list[Channel]) -> list[Channel]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate channel names: {dupes}")
        return value

    @property
    def channel_names(self) -> list[str]:
        """Channel names in output order."""
        return [c.name for c in self.channels]

    def well(self, well: str) -> WellLayout:
        """Return the well with id ``well`` (e.g. ``"A01"``).

        Raises
        ------
        KeyError
            If the plate has no such well.
        """
        for w in self.wells:
            if w.id == well:
                return w
        raise KeyError(f"plate {self.name} has no well {well!r}")

    def iter_fields(self):
        """Yield ``(well, field)`` pairs in plate order."""
        for w in self.wells:
            for f in w.fields:
                yield w, f

    def n_images(self) -> int:
        """Number of planes present on disk."""
        return sum(len(f.planes) for _, f in self.iter_fields())

    def save(self, path: str | Path) -> None:
        """Write the layout as JSON."""
        Path(path).write_text(self.model_dump_json(indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "PlateLayout":
        """Read a layout written by :meth:`save`."""
        return cls.model_validate_json(Path(path).read_text())
