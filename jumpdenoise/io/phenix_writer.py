"""Writing the Phenix export layout: ``Index.idx.xml`` (Harmony V5) and the image file names.

What a real Opera Phenix / Harmony export holds, as far as the reader
(:mod:`jumpdenoise.io.phenix`) reads it; :mod:`jumpdenoise.io.synthetic` writes its plates
with it, and tests write index files of any size with :func:`write_index_xml`.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

__all__ = ["NAMESPACE", "PIXEL_SIZE_M", "phenix_file_name", "write_index_xml"]

#: XML namespace of a Harmony V5 ``Index.idx.xml``.
NAMESPACE = "http://www.perkinelmer.com/PEHH/HarmonyV5"
#: Pixel size (metres) the index gives every image.
PIXEL_SIZE_M = 5.979760809567617e-07
# (rows, columns, name) of the standard plate formats, smallest first
_PLATES = ((2, 3, "6"), (3, 4, "12"), (4, 6, "24"), (6, 8, "48"), (8, 12, "96"), (16, 24, "384"), (32, 48, "1536"))


def phenix_file_name(row: int, column: int, field: int, channel: int, plane: int = 1) -> str:
    """Phenix file name, e.g. ``r01c01f01p01-ch1sk1fk1fl1.tiff`` (1-based numbers)."""
    return f"r{row:02d}c{column:02d}f{field:02d}p{plane:02d}-ch{channel}sk1fk1fl1.tiff"


def write_index_xml(
    path: str | Path,
    *,
    plate_name: str,
    wells: list[tuple[int, int]],
    fields: int,
    channels: tuple[str, ...] | list[str],
    size: tuple[int, int],
    plate_shape: tuple[int, int] | None = None,
    compact: bool = False,
) -> int:
    """Write a Harmony V5 ``Index.idx.xml`` listing every (well, field, channel) image.

    Parameters
    ----------
    path
        The XML file to write.
    plate_name
        ``PlateID`` and ``Name``.
    wells
        (row, column) numbers, 1-based.
    fields
        Fields per well (``FieldID`` 1..fields).
    channels
        Channel names (``ChannelID`` 1..n).
    size
        (y, x) image size.
    plate_shape
        (rows, columns) of the plate; default the smallest standard plate holding ``wells``.
    compact
        Harmony V7 style: channel name, size and resolution once per channel in ``<Maps>``
        and only ids, URL and position in each ``<Image>`` (small files with many images).

    Returns
    -------
    int
        Number of ``<Image>`` entries written.
    """
    max_r = max((r for r, _ in wells), default=1)
    max_c = max((c for _, c in wells), default=1)
    rows, cols, label = next(((r, c, n) for r, c, n in _PLATES if max_r <= r and max_c <= c), (max_r, max_c, "custom"))
    if plate_shape is not None:
        rows, cols = plate_shape
    name = escape(plate_name)
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n'
                '<EvaluationInputData xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
                f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" Version="1" xmlns="{NAMESPACE}">\n'
                "  <User>jumpdenoise</User>\n  <InstrumentType>Phenix</InstrumentType>\n  <Plates>\n    <Plate>\n"
                f"      <PlateID>{name}</PlateID>\n      <MeasurementID>00000000-0000-0000-0000-000000000000</MeasurementID>\n"
                "      <MeasurementStartTime>2026-01-01T00:00:00+00:00</MeasurementStartTime>\n"
                f"      <Name>{name}</Name>\n      <PlateTypeName>{label} synthetic plate</PlateTypeName>\n"
                f"      <PlateRows>{rows}</PlateRows>\n      <PlateColumns>{cols}</PlateColumns>\n")
        f.writelines(f'      <Well id="{r:02d}{c:02d}" />\n' for r, c in wells)
        f.write("    </Plate>\n  </Plates>\n  <Wells>\n")
        for r, c in wells:
            f.write(f"    <Well>\n      <id>{r:02d}{c:02d}</id>\n      <Row>{r}</Row>\n      <Col>{c}</Col>\n")
            f.writelines(f'      <Image id="{r:02d}{c:02d}K1F{fi}P1R{ch}" />\n'
                         for fi in range(1, fields + 1) for ch in range(1, len(channels) + 1))
            f.write("    </Well>\n")
        f.write("  </Wells>\n  <Maps>\n    <Map>\n")
        for ch, cname in enumerate(channels, start=1):
            f.write(f'      <Entry ChannelID="{ch}">\n        <FlatfieldProfile>{{Background: {{Character: Null, '
                    f"Profile: {{Type: Identity}}, Quality: 1}}, Channel: {ch}, ChannelName: {escape(cname)}, "
                    "Foreground: {Character: Null, Profile: {Type: Identity}, Quality: 1}, Version: Acapella:2013}"
                    "</FlatfieldProfile>\n      </Entry>\n")
        if compact:  # Harmony V7 style: channel facts in the Maps, not on every <Image>
            f.write("    </Map>\n    <Map>\n")
            for ch, cname in enumerate(channels, start=1):
                f.write(f'      <Entry ChannelID="{ch}">\n        <ChannelName>{escape(cname)}</ChannelName>\n'
                        f'        <ImageResolutionX Unit="m">{PIXEL_SIZE_M!r}</ImageResolutionX>\n'
                        f"        <ImageSizeX>{size[1]}</ImageSizeX>\n        <ImageSizeY>{size[0]}</ImageSizeY>\n"
                        "      </Entry>\n")
        f.write("    </Map>\n  </Maps>\n  <Images>\n")
        for r, c in wells:
            for fi in range(1, fields + 1):
                for ch, cname in enumerate(channels, start=1):
                    f.write(_image_xml(r, c, fi, ch, escape(cname), size, compact))
                    count += 1
        f.write("  </Images>\n</EvaluationInputData>\n")
    return count


def _image_xml(r: int, c: int, fi: int, ch: int, cname: str, size: tuple[int, int], compact: bool) -> str:
    head = (f'    <Image Version="1">\n      <id>{r:02d}{c:02d}K1F{fi}P1R{ch}</id>\n      <State>Ok</State>\n'
            f"      <URL>{phenix_file_name(r, c, fi, ch)}</URL>\n      <Row>{r}</Row>\n      <Col>{c}</Col>\n"
            f"      <FieldID>{fi}</FieldID>\n      <PlaneID>1</PlaneID>\n      <TimepointID>0</TimepointID>\n"
            f"      <ChannelID>{ch}</ChannelID>\n")
    if compact:
        return head + "    </Image>\n"
    return head + (
        f"      <FlimID>1</FlimID>\n      <ChannelName>{cname}</ChannelName>\n      <ImageType>Signal</ImageType>\n"
        f'      <ImageResolutionX Unit="m">{PIXEL_SIZE_M!r}</ImageResolutionX>\n'
        f'      <ImageResolutionY Unit="m">{PIXEL_SIZE_M!r}</ImageResolutionY>\n'
        f"      <ImageSizeX>{size[1]}</ImageSizeX>\n      <ImageSizeY>{size[0]}</ImageSizeY>\n"
        "      <BinningX>2</BinningX>\n      <BinningY>2</BinningY>\n      <MaxIntensity>65535</MaxIntensity>\n"
        '      <PositionX Unit="m">0</PositionX>\n      <PositionY Unit="m">0</PositionY>\n'
        '      <PositionZ Unit="m">0</PositionZ>\n      <AbsTime>2026-01-01T00:00:00+00:00</AbsTime>\n'
        '      <ObjectiveMagnification Unit="">20</ObjectiveMagnification>\n    </Image>\n'
    )
