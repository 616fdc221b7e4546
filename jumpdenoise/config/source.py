"""Configuration of the source plate (what discovery reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SourceConfig(BaseModel):
    """Where the raw plate is and how to read it.

    Attributes
    ----------
    kind
        ``"phenix"`` (folder or Index XML), ``"load_data"`` (CSV), ``"hyperstack"`` (TIFF
        folder), or ``"auto"`` (guessed from ``path``).
    path
        Export folder, Index XML file, load_data CSV, or hyperstack folder.
    path_rewrite
        Prefix replacements applied to file paths/URLs of a load_data CSV (old -> new),
        for data that moved since the CSV was written.
    filename_pattern
        Hyperstacks only: regular expression with named groups ``well`` (or ``row`` and
        ``column``) and ``field`` matched against each file name.
    channel_names
        Hyperstacks only, when files carry no channel labels: names in file order.
    axes
        Hyperstacks only: axis order of each file (``"CYX"``, ``"YXC"``) or ``"auto"``.
    plate_name
        Overrides the plate name found in the source.
    channels
        Optional subset of channel names to convert (default: all).
    channel_map
        Phenix only: source channel name (e.g. ``"HOECHST 33342"``) or Phenix channel
        number written ``"ch5"`` -> name used downstream (e.g. ``"DNA"``). Channels not in
        the map keep their source name.
    channel_map_file
        Phenix only: file giving that map: a pe2loaddata ``config.yml`` (its ``channels:``
        section; the ``Orig`` prefix of the values is dropped) or a flat JSON/YAML mapping
        such as the Cell Painting Gallery's ``channel_table.json`` (``{"ch1": "Mito"}``).
        Entries of ``channel_map`` take precedence.
    require_files
        Raise instead of reporting when the source lists images whose files are missing.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["auto", "phenix", "load_data", "hyperstack"] = "auto"
    path: Path
    path_rewrite: dict[str, str] = Field(default_factory=dict)
    filename_pattern: str | None = None
    channel_names: list[str] | None = None
    axes: str = "auto"
    plate_name: str | None = None
    channels: list[str] | None = None
    channel_map: dict[str, str] = Field(default_factory=dict)
    channel_map_file: Path | None = None
    require_files: bool = False
