"""PerkinElmer Phenix / Harmony exports: ``Index.idx.xml`` (Harmony V5 namespace) and
``Index.xml`` (Harmony V7 GUID namespace), plus folders of Phenix-named TIFFs without one.

The Index file is parsed *streaming* (``xml.etree.ElementTree.iterparse``; each element is
dropped once read), in one linear pass with hash maps, so files with 100,000+ ``<Image>``
entries parse in bounded memory. Where the facts live:

- channel name: ``Image/ChannelName`` (V5) else ``Maps/Map/Entry[@ChannelID]/ChannelName``
  (V7) else the ``ChannelName:`` inside the entry's ``FlatfieldProfile`` text, else
  ``ch<ID>``; then renamed through ``channel_map`` (keys: source name or ``ch<ID>``);
- plate shape: ``Plate/PlateRows`` and ``PlateColumns``;
- pixel size: ``ImageResolutionX`` (metres, converted to micrometres);
- image file: ``Image/URL``, relative to the XML's folder.

Several planes (z) or timepoints: the lowest ``TimepointID`` and, within it, the lowest
``PlaneID`` present in the file are kept (plane 1 / timepoint 1 in practice); the choice
and the number of images left out are recorded in ``layout.metadata``.
Listed images whose file is not on disk (failed autofocus, partial copies) go to
``layout.missing`` and are not fatal.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from jumpdenoise.errors import ImageError, SourceError
from jumpdenoise.io.discovery import PHENIX_NAME_RE, DirIndex, PlaneTable, row_from_number
from jumpdenoise.io.layout import Channel, PlaneRef, PlateLayout
from jumpdenoise.io.tiff import probe

__all__ = ["read_phenix", "read_phenix_files"]

_FLATFIELD_NAME_RE = re.compile(r"ChannelName:\s*(.*?)\s*(?:,\s*[A-Za-z]\w*:|\}\s*$)", re.S)
_CHANNEL_KEYS = (
    "ChannelName", "ImageResolutionX", "ImageSizeX", "ImageSizeY", "MainExcitationWavelength",
    "MainEmissionWavelength", "FlatfieldProfile",
)
_IMAGE_KEYS = ("ChannelID", "Row", "Col", "FieldID", "PlaneID", "TimepointID", "URL", "id")
_PLATE_KEYS = ("PlateID", "Name", "PlateRows", "PlateColumns", "MeasurementID", "PlateTypeName")

Facts = dict[str, tuple[str, "str | None"]]  # element name -> (text, Unit attribute)


def _facts(elem, wanted: dict[str, str]) -> Facts:
    """Text and ``Unit`` of the children of ``elem`` whose (namespaced) tag is in ``wanted``."""
    out = {}
    for child in elem:
        key = wanted.get(child.tag)
        if key is not None:
            out[key] = ((child.text or "").strip(), child.get("Unit"))
    return out


def _parse_index(path: Path):
    """One streaming pass over an Index XML (``iterparse`` end events; elements cleared once read).

    Returns
    -------
    tuple
        ``(root_info, plate, entries, channel_facts, images)``: root tag/version/instrument,
        plate facts, ``<Map><Entry>`` facts by ChannelID (merged over all maps), facts of the
        first ``<Image>`` of each ChannelID, and one tuple of ``_IMAGE_KEYS`` texts per image.
    """
    root_info: dict[str, str] = {}
    plate: dict[str, str] = {}
    entries: dict[str, Facts] = {}
    channel_facts: dict[str, Facts] = {}
    images: list[tuple[str, ...]] = []
    ns = None
    elem = None
    try:
        for _, elem in ET.iterparse(str(path), events=("end",)):
            if ns is None:
                ns = elem.tag[: elem.tag.index("}") + 1] if elem.tag.startswith("{") else ""
                t_image, t_entry, t_plate, t_well, t_instr = (ns + n for n in ("Image", "Entry", "Plate", "Well", "InstrumentType"))
                w_image = {ns + k: k for k in _IMAGE_KEYS}
                w_channel = {ns + k: k for k in _CHANNEL_KEYS}
                w_plate = {ns + k: k for k in _PLATE_KEYS}
            tag = elem.tag
            if tag == t_image:
                if len(elem) == 0:  # <Image id=.../> reference inside <Well>
                    continue
                values = dict.fromkeys(_IMAGE_KEYS, "")
                for child in elem:
                    key = w_image.get(child.tag)
                    if key is not None:
                        values[key] = (child.text or "").strip()
                cid = values["ChannelID"]
                images.append(tuple(values[k] for k in _IMAGE_KEYS))
                if cid not in channel_facts:
                    channel_facts[cid] = _facts(elem, w_channel)
            elif tag == t_entry:
                info = entries.setdefault(elem.get("ChannelID", ""), {})
                for key, value in _facts(elem, w_channel).items():
                    info.setdefault(key, value)
            elif tag == t_plate and len(elem) and not plate:
                plate = {k: v[0] for k, v in _facts(elem, w_plate).items()}
            elif tag == t_instr:
                root_info["instrument"] = (elem.text or "").strip()
            elif tag != t_well:
                continue
            # Drop what was read (an emptied element stays in its parent: ~70 bytes).
            elem.clear()
    except ET.ParseError as exc:
        raise SourceError(f"{path}: not a valid Index XML ({exc})") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read Index XML ({exc.strerror or exc})") from None
    if elem is None or elem.tag != f"{ns}EvaluationInputData":
        raise SourceError(
            f"{path}: not a Harmony Index XML (root element {getattr(elem, 'tag', None)!r}, expected EvaluationInputData)"
        )
    root_info["namespace"] = ns.strip("{}")
    root_info["version"] = elem.get("Version", "")
    return root_info, plate, entries, channel_facts, images


def _int(value: str, what: str, path: Path) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SourceError(f"{path}: <{what}> is {value!r}, expected an integer") from None


def _micrometres(value: tuple[str, str | None] | None) -> float | None:
    if not value or not value[0]:
        return None
    try:
        number = float(value[0])
    except ValueError:
        return None
    unit = (value[1] or "").strip().lower()
    if unit == "m" or (not unit and number < 1e-3):
        return number * 1e6
    return number


def _float(value: tuple[str, str | None] | None) -> float | None:
    try:
        return float(value[0]) if value and value[0] else None
    except ValueError:
        return None


def read_phenix(
    path: str | Path,
    *,
    plate_name: str | None = None,
    channels: list[str] | None = None,
    channel_map: dict[str, str] | None = None,
    timepoint: int | None = None,
    plane: int | None = None,
) -> PlateLayout:
    """Read a Harmony export (``Index.idx.xml`` or ``Index.xml``) into a :class:`PlateLayout`.

    Parameters
    ----------
    path
        The export folder (holding the Index XML, or an ``Images/`` subfolder with it), or
        the XML file itself.
    plate_name
        Overrides the plate name (default: ``Plate/Name``, else ``PlateID``).
    channels
        Channels to keep, by their final names, in this order (default: all, by ChannelID).
    channel_map
        Source channel name (or ``"ch<ID>"``) -> name used downstream, e.g.
        ``{"HOECHST 33342": "DNA"}``. Unmapped channels keep their source name.
    timepoint, plane
        Keep this TimepointID / PlaneID (default: the lowest present).

    Raises
    ------
    SourceError
        Unreadable or malformed XML, duplicate (well, field, channel), two channels with
        one name. The message names the XML.
    """
    from jumpdenoise.io.discovery import find_index

    path = Path(path)
    index = path if path.is_file() else find_index(path)
    if index is None:
        raise SourceError(f"{path}: no Index.idx.xml or Index.xml found")
    root_info, plate, entries, channel_facts, images = _parse_index(index)
    if not images:
        raise SourceError(f"{index}: the Index XML lists no <Image>")
    channel_map = dict(channel_map or {})
    folder = str(index.parent)

    # Channel facts: from the first <Image> of each channel (V5), then the Maps (V7).
    names: dict[str, str] = {}
    waves: dict[str, tuple[float | None, float | None]] = {}
    resolution = size_x = size_y = None
    for cid, info in list(channel_facts.items()) + list(entries.items()):
        if cid not in names:
            if info.get("ChannelName", ("", None))[0]:
                names[cid] = info["ChannelName"][0]
            elif "FlatfieldProfile" in info:
                m = _FLATFIELD_NAME_RE.search(info["FlatfieldProfile"][0])
                if m:
                    names[cid] = m.group(1).strip().strip('"')
        if cid not in waves and "MainExcitationWavelength" in info:
            waves[cid] = (_float(info.get("MainExcitationWavelength")), _float(info.get("MainEmissionWavelength")))
        if resolution is None:
            resolution = _micrometres(info.get("ImageResolutionX"))
        if size_x is None and "ImageSizeX" in info and "ImageSizeY" in info:
            size_x, size_y = info["ImageSizeX"][0], info["ImageSizeY"][0]

    # images: tuples in _IMAGE_KEYS order (ChannelID, Row, Col, FieldID, PlaneID, TimepointID, URL, id)
    timepoints = {_int(img[5] or "0", "TimepointID", index) for img in images}
    planes = {_int(img[4] or "1", "PlaneID", index) for img in images}
    tp = timepoint if timepoint is not None else min(timepoints, default=0)
    pl = plane if plane is not None else min(planes, default=1)
    tp_text, pl_text = str(tp), str(pl)
    final_names: dict[str, str] = {}
    for cid in {img[0] for img in images if int(img[5] or "0") == tp and int(img[4] or "1") == pl}:
        source_name = names.get(cid, f"ch{cid}")
        final_names[cid] = channel_map.get(source_name, channel_map.get(f"ch{cid}", source_name))
    if not final_names:
        raise SourceError(f"{index}: no image with TimepointID {tp} and PlaneID {pl} (present: "
                          f"timepoints {sorted(timepoints)}, planes {sorted(planes)})")
    ordered = sorted(final_names, key=lambda c: (0, int(c), "") if c.isdigit() else (1, 0, c))
    clash = _first_duplicate([final_names[c] for c in ordered])
    if clash:
        ids = [c for c in ordered if final_names[c] == clash]
        raise SourceError(f"{index}: channels {ids} all map to the name {clash!r}; fix channel_map")
    table = PlaneTable(str(index))
    present = DirIndex()
    skipped = 0
    first_file = None
    rows: dict[str, str] = {}
    for cid, row, col, field, img_plane, img_tp, url, img_id in images:
        if (img_tp or "0") != tp_text or (img_plane or "1") != pl_text:
            if int(img_tp or "0") != tp or int(img_plane or "1") != pl:  # e.g. "01"
                skipped += 1
                continue
        name = final_names[cid]
        if not url:
            raise SourceError(f"{index}: <Image> {img_id or '?'} has no <URL>")
        file = url if os.path.isabs(url) else os.path.join(folder, url)
        letter = rows.get(row)
        if letter is None:
            letter = rows[row] = row_from_number(_int(row, "Row", index))
        exists = present.exists(file)
        if exists and first_file is None:
            first_file = file
        table.add(letter, _int(col, "Col", index), _int(field, "FieldID", index), name, PlaneRef(path=file), exists)
    channel_list = [
        Channel(name=final_names[c], source_id=c, excitation_nm=waves.get(c, (None, None))[0],
                emission_nm=waves.get(c, (None, None))[1])
        for c in ordered
    ]
    shape, dtype = _shape_dtype(first_file, size_y, size_x, index)
    n_rows = int(plate["PlateRows"]) if plate.get("PlateRows", "").isdigit() else None
    n_cols = int(plate["PlateColumns"]) if plate.get("PlateColumns", "").isdigit() else None
    metadata = {
        "index_path": str(index),
        "index_namespace": root_info["namespace"],
        "index_version": root_info.get("version", ""),
        "instrument": root_info.get("instrument", ""),
        "plate_id": plate.get("PlateID", ""),
        "measurement_id": plate.get("MeasurementID", ""),
        "plate_type": plate.get("PlateTypeName", ""),
        "timepoint": str(tp),
        "plane": str(pl),
        "n_timepoints": str(len(timepoints)),
        "n_planes": str(len(planes)),
        "images_listed": str(len(images)),
        "images_other_planes_or_timepoints": str(skipped),
        "source_channel_names": ";".join(f"{c}={names.get(c, '')}" for c in ordered),
    }
    name = plate_name or plate.get("Name") or plate.get("PlateID") or _plate_name_from_folder(folder)
    return table.build(
        name=name, source_kind="phenix", source_path=str(index), channels=channel_list, shape=shape,
        dtype=dtype, n_rows=n_rows, n_columns=n_cols, pixel_size_um=resolution, metadata=metadata,
        subset=channels,
    )


def _first_duplicate(values: list[str]) -> str | None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            return v
        seen.add(v)
    return None


def _shape_dtype(first_file: str | None, size_y, size_x, source: Path) -> tuple[tuple[int, int], str]:
    """Shape and dtype from the first file on disk, else from the XML (dtype uint16)."""
    if first_file is not None:
        try:
            return probe(first_file)
        except ImageError:
            pass  # reported when the file is converted
    if size_x is None:
        raise SourceError(f"{source}: no ImageSizeX/Y and no image file on disk to read the size from")
    return (_int(size_y, "ImageSizeY", source), _int(size_x, "ImageSizeX", source)), "uint16"


def _plate_name_from_folder(folder: Path) -> str:
    """``.../BR00117010__2020-11-08T18_18_00-Measurement1/Images`` -> ``BR00117010``."""
    base = folder.parent if folder.name.lower() == "images" else folder
    return base.name.split("__", 1)[0] or "plate"


def read_phenix_files(
    folder: str | Path,
    *,
    plate_name: str | None = None,
    channels: list[str] | None = None,
    channel_map: dict[str, str] | None = None,
) -> PlateLayout:
    """Read a folder of Phenix-named TIFFs (``rRRcCCfFFpPP-chNsk1fk1fl1.tiff``) with no Index XML.

    Channel names come from ``channel_map`` (keys ``"ch<N>"``), else from a
    ``channel_table.json`` (``{"ch1": "Mito", ...}``) in the folder or its parent, else
    ``ch<N>``. The lowest plane and timepoint (``sk``) present are kept.

    Raises
    ------
    SourceError
        The folder is unreadable or holds no Phenix-named TIFF.
    """
    from jumpdenoise.io.discovery import load_channel_map

    folder = Path(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise SourceError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None
    matches = [(n, m) for n in names if (m := PHENIX_NAME_RE.match(n))]
    if not matches:
        raise SourceError(f"{folder}: no Phenix-named TIFF (rRRcCCfFFpPP-chN...tiff) found")
    cmap = {}
    for candidate in (folder / "channel_table.json", folder.parent / "channel_table.json"):
        if candidate.is_file():
            cmap = load_channel_map(candidate)
            break
    cmap.update(channel_map or {})
    pl = min(int(m["plane"]) for _, m in matches)
    sk = min(int(m["sk"]) for _, m in matches)
    table = PlaneTable(str(folder))
    ids: set[int] = set()
    for n, m in matches:
        if int(m["plane"]) != pl or int(m["sk"]) != sk:
            continue
        cid = int(m["channel"])
        ids.add(cid)
        name = cmap.get(f"ch{cid}", cmap.get(str(cid), f"ch{cid}"))
        table.add(row_from_number(int(m["row"])), int(m["col"]), int(m["field"]), name,
                  PlaneRef(path=str(folder / n)), True)
    ordered = sorted(ids)
    final = [cmap.get(f"ch{c}", cmap.get(str(c), f"ch{c}")) for c in ordered]
    clash = _first_duplicate(final)
    if clash:
        raise SourceError(f"{folder}: several channels map to the name {clash!r}; fix channel_map")
    shape, dtype = probe(folder / matches[0][0])
    return table.build(
        name=plate_name or _plate_name_from_folder(folder), source_kind="phenix", source_path=str(folder),
        channels=[Channel(name=n, source_id=str(c)) for n, c in zip(final, ordered)], shape=shape, dtype=dtype,
        metadata={"plane": str(pl), "timepoint": str(sk), "index_path": ""}, subset=channels,
    )
