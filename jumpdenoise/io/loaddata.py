"""Cell Painting Gallery ``load_data.csv`` / ``load_data_with_illum.csv``.

One row per field (site). Each channel ``<Ch>`` comes from ``FileName_Orig<Ch>`` +
``PathName_Orig<Ch>`` (pe2loaddata output) or from ``URL_Orig<Ch>`` (``file://`` URL,
local path, or ``s3://`` URL). ``Metadata_Plate``, ``Metadata_Well`` (``A01``) and
``Metadata_Site`` place it. ``Illum`` columns are ignored; the CSV's path is kept in
``layout.metadata["csv_path"]`` so that later exports can reuse its columns.

``path_rewrite`` replaces path/URL prefixes (longest first) for data that moved, e.g.
``{"s3://cellpainting-gallery/": "/data/cellpainting-gallery/"}``. URLs that remain remote
(``s3://``, ``http(s)://``) cannot be read locally: they are listed in ``layout.missing``,
and a CSV whose images are all remote is refused with a hint to set ``path_rewrite``.
Relative paths are resolved against the CSV's folder.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from jumpdenoise.errors import ImageError, SourceError
from jumpdenoise.io.discovery import DirIndex, PlaneTable
from jumpdenoise.io.layout import Channel, PlaneRef, PlateLayout, split_well
from jumpdenoise.io.tiff import probe

__all__ = ["read_load_data"]

_COLUMN_RE = re.compile(r"^(FileName|PathName|URL)_Orig(?P<channel>.+)$")
_REMOTE = ("s3://", "http://", "https://", "gs://")


def _rewrite(value: str, rules: list[tuple[str, str]]) -> str:
    for old, new in rules:
        if value.startswith(old):
            return new + value[len(old):]
    return value


def _to_local(value: str, base: Path) -> str | None:
    """Local absolute path of a path or URL, or ``None`` when it is remote."""
    if value.startswith(_REMOTE):
        return None
    if value.startswith("file://"):
        parsed = urlparse(value)
        value = unquote(parsed.path)
        if parsed.netloc and parsed.netloc != "localhost":
            value = f"//{parsed.netloc}{value}"
    if not os.path.isabs(value):
        value = os.path.normpath(os.path.join(base, value))
    return value


def read_load_data(
    csv_path: str | Path,
    *,
    path_rewrite: dict[str, str] | None = None,
    plate_name: str | None = None,
    channels: list[str] | None = None,
) -> PlateLayout:
    """Read a load_data CSV into a :class:`PlateLayout`.

    Parameters
    ----------
    csv_path
        ``load_data.csv`` or ``load_data_with_illum.csv``.
    path_rewrite
        Prefix replacements (old -> new) applied to every ``PathName``/``URL`` value.
    plate_name
        Plate to read when the CSV holds several (``Metadata_Plate``); with a single-plate
        CSV, a new name for it.
    channels
        Channels to keep (names as in ``Orig<Ch>``), in this order; default all, in
        column order.

    Raises
    ------
    SourceError
        Unreadable CSV, missing columns, several plates and no ``plate_name``, bad well or
        site values, duplicate (well, site), every image remote, or no image size known.
        The message names the CSV (and the line).
    """
    csv_path = Path(csv_path)
    rules = sorted((path_rewrite or {}).items(), key=lambda kv: -len(kv[0]))
    base = csv_path.parent
    try:
        handle = open(csv_path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SourceError(f"{csv_path}: cannot read load_data CSV ({exc.strerror or exc})") from None
    with handle:
        try:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            numbered = [(reader.line_num, row) for row in reader]  # blank lines are skipped: keep numbers
        except (csv.Error, UnicodeDecodeError) as exc:
            raise SourceError(f"{csv_path}: not a readable CSV ({type(exc).__name__}: {exc})") from None
    order: list[str] = []
    for col in header:
        m = _COLUMN_RE.match(col)
        if m and m["channel"] not in order:
            order.append(m["channel"])
    for col in ("Metadata_Well", "Metadata_Site"):
        if col not in header:
            raise SourceError(f"{csv_path}: not a load_data CSV: column {col} missing (columns: {header[:8]}...)")
    if not order:
        raise SourceError(f"{csv_path}: not a load_data CSV: no FileName_Orig<Ch> or URL_Orig<Ch> column")
    url_cols = {ch: f"URL_Orig{ch}" in header for ch in order}
    for ch in order:
        if not url_cols[ch] and not (f"FileName_Orig{ch}" in header and f"PathName_Orig{ch}" in header):
            raise SourceError(f"{csv_path}: channel {ch!r} needs FileName_Orig{ch} and PathName_Orig{ch} (or URL_Orig{ch})")
    empty = [line for line, row in numbered if not any((v or "").strip() for v in row.values() if isinstance(v, str))]
    if empty:
        raise SourceError(f"{csv_path}, line {empty[0]}: empty row (only commas)"
                          + (f"; also line(s) {', '.join(map(str, empty[1:6]))}" if len(empty) > 1 else ""))
    rows = [row for _, row in numbered]
    if not rows:
        raise SourceError(f"{csv_path}: the load_data CSV has a header but no rows")
    plates = {r.get("Metadata_Plate") or "" for r in rows}
    if len(plates) > 1 and plate_name not in plates:
        raise SourceError(f"{csv_path}: holds plates {sorted(plates)}; set source.plate_name to one of them")
    table = PlaneTable(str(csv_path))
    present = DirIndex()
    remote = 0
    first_file = None
    first: dict = {}
    for line, row in numbered:
        if len(plates) > 1 and row.get("Metadata_Plate") != plate_name:
            continue
        if not first:
            first = row
        try:
            r, c = split_well(row["Metadata_Well"] or "")
            site = int(float(row["Metadata_Site"]))
        except (ValueError, TypeError) as exc:
            raise SourceError(f"{csv_path}, line {line}: bad Metadata_Well/Metadata_Site ({exc})") from None
        for ch in order:
            if url_cols[ch] and row.get(f"URL_Orig{ch}"):
                raw = _rewrite(row[f"URL_Orig{ch}"], rules)
            else:
                folder = row.get(f"PathName_Orig{ch}") or ""
                name = row.get(f"FileName_Orig{ch}") or ""
                if not name:
                    raise SourceError(f"{csv_path}, line {line}: empty FileName_Orig{ch}")
                raw = _rewrite(folder.rstrip("/\\") + "/" + name if folder else name, rules)
            local = _to_local(raw, base)
            if local is None:
                remote += 1
                table.add(r, c, site, ch, PlaneRef(path=raw), False)
                continue
            exists = present.exists(local)
            if exists and first_file is None:
                first_file = local
            table.add(r, c, site, ch, PlaneRef(path=local), exists)
    n_images = len(table.missing) + sum(len(p) for p in table.planes.values())
    if n_images and remote == n_images:
        raise SourceError(
            f"{csv_path}: all {remote} images are remote URLs (e.g. {table.missing[0].path}); "
            "set source.path_rewrite to map their prefix to a local copy"
        )
    shape, dtype = _shape_dtype(first_file, first, csv_path)
    pixel = None
    if first.get("Metadata_ImageResolutionX"):
        try:
            value = float(first["Metadata_ImageResolutionX"])
            pixel = value * 1e6 if value < 1e-3 else value
        except ValueError:
            pixel = None
    name = plate_name or (first.get("Metadata_Plate") or "") or csv_path.parent.name
    source_ids = {ch: first.get(f"Metadata_ChannelID_Orig{ch}") or str(i + 1) for i, ch in enumerate(order)}
    has_illum = any(col.startswith(("FileName_Illum", "URL_Illum")) for col in header)
    metadata = {"csv_path": str(csv_path), "illum_columns": "yes" if has_illum else "no", "remote_images": str(remote)}
    if rules:
        metadata["path_rewrite"] = ";".join(f"{o}->{n}" for o, n in rules)
    return table.build(
        name=name, source_kind="load_data", source_path=str(csv_path),
        channels=[Channel(name=ch, source_id=source_ids[ch]) for ch in order], shape=shape, dtype=dtype,
        pixel_size_um=pixel, metadata=metadata, subset=channels,
    )


def _shape_dtype(first_file: str | None, first: dict, csv_path: Path) -> tuple[tuple[int, int], str]:
    if first_file is not None:
        try:
            return probe(first_file)
        except ImageError:
            pass  # reported when the file is converted
    x, y = first.get("Metadata_ImageSizeX"), first.get("Metadata_ImageSizeY")
    if x and y:
        try:
            return (int(float(y)), int(float(x))), "uint16"
        except ValueError:
            pass
    raise SourceError(
        f"{csv_path}: no listed image file exists and the CSV has no Metadata_ImageSizeX/Y; "
        "check the paths (or source.path_rewrite)"
    )
