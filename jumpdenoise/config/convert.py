"""Configuration of the conversion to OME-Zarr."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The longest side of a field at the coarsest level ``pyramid_levels: auto`` writes. napari
#: shows a multiscale image at the coarsest level that still has a data pixel per screen
#: pixel: a 384-well plate of 9 fields per well, 1080 x 1080 each (72 x 48 fields), fits a
#: ~2000-pixel wide window at 33 pixels per field, so zoomed out on the whole plate it reads
#: ~8 MB per channel (level 5) instead of 8 GB (level 0). Every level adds a quarter of the
#: previous one's pixels (1/3 more in all).
AUTO_PYRAMID_SIDE = 64


def pyramid_levels_for(levels: int | str | None, shape_yx: tuple[int, int]) -> int:
    """Extra pyramid levels of a plate of ``shape_yx`` fields for the setting ``levels``.

    Examples
    --------
    >>> [pyramid_levels_for("auto", (s, s)) for s in (1080, 256, 65, 64, 16)]
    [5, 2, 1, 0, 0]
    >>> pyramid_levels_for(2, (1080, 1080)), pyramid_levels_for(None, (1080, 1080))
    (2, 0)
    """
    if levels != "auto":
        return int(levels or 0)
    side, n = max(shape_yx), 0
    while side > AUTO_PYRAMID_SIDE:
        side //= 2
        n += 1
    return n


class ConvertConfig(BaseModel):
    """How the OME-Zarr plate is written.

    The defaults favour conversion speed: blosc lz4 with bit-shuffle compresses a 16-bit
    1080x1080 plane in about 2 ms (zstd level 3 takes about 9 ms for a 6 % smaller file),
    so writing costs little next to decoding the LZW TIFFs.

    Attributes
    ----------
    chunk_yx
        Chunk size in y and x; ``None`` means the whole field (default: one channel x whole
        field per chunk).
    shard
        Write one shard per field image (all channels, whole field), chunks inside it.
    codec
        Blosc compressor name.
    clevel
        Compression level.
    shuffle
        Blosc shuffle mode.
    pyramid_levels
        Extra downsampled levels (2x each); 0 writes level 0 only. ``"auto"`` (default):
        halve until the field's longer side is at most :data:`AUTO_PYRAMID_SIDE` pixels
        (a 1080 x 1080 field gets 5 levels, the coarsest 33 x 33), see
        :func:`pyramid_levels_for`.
    fields_per_unit
        How many fields one parallel task converts (4 saves ~6 % of the CPU time of 1 in
        scheduling; a bad field never stops the other fields of its task).
    overwrite
        Replace an output that jumpdenoise wrote and recognises (a jumpdenoise plate, or an
        empty folder); nothing else is ever removed (it is refused with an error).
        Without it, a plate prepared from the same source is resumed and any other existing
        output is refused.
    allow_missing
        Convert a source even though some of what it lists or holds will not become a field
        (a field whose every image file is missing, a hyperstack file not matching the
        filename pattern); they are listed in the report. Default: refuse, listing them.
    """

    model_config = ConfigDict(extra="forbid")

    chunk_yx: int | None = Field(default=None, ge=16)
    shard: bool = False
    codec: Literal["zstd", "lz4", "lz4hc", "zlib", "blosclz"] = "lz4"
    clevel: int = Field(default=5, ge=0, le=9)
    shuffle: Literal["bitshuffle", "shuffle", "noshuffle"] = "bitshuffle"
    pyramid_levels: Annotated[int, Field(ge=0, le=8)] | Literal["auto"] = "auto"
    fields_per_unit: int = Field(default=4, ge=1)
    overwrite: bool = False
    allow_missing: bool = False
