"""Tile plans for whole-field prediction: padding to the network's stride, tiles, stitching.

A UNet with ``d`` poolings (stride ``s = 2**d``) is only shift-equivariant by multiples of
``s``, and every output pixel depends on the input within its receptive-field radius ``r``.
So the plan

- pads the field (bottom/right, reflection) to a multiple of ``s``;
- starts every tile at a multiple of ``s`` and makes tiles and overlaps multiples of ``s``;
- keeps, from each tile, only pixels at least ``overlap / 2`` away from every edge it shares
  with a neighbour (``"crop"``), or blends neighbours with a cosine ramp that starts
  ``guard`` pixels away from the shared edge (``"blend"``).

When ``overlap >= 2 r`` (crop) or ``guard >= r`` (blend), every kept pixel was computed
with its whole receptive field inside the tile, so the stitched field equals the
prediction of the whole padded field up to float rounding (~1e-6 relative).

Everything here is plain index arithmetic and numpy; :func:`stitch` works on numpy arrays
and torch tensors alike (it only slices, multiplies and adds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

BlendMode = Literal["crop", "blend"]


def round_up(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ``>= n``."""
    multiple = max(1, int(multiple))
    return int(math.ceil(n / multiple) * multiple)


def padded_shape(shape_yx: Sequence[int], stride: int) -> tuple[int, int]:
    """``shape_yx`` rounded up to multiples of ``stride``."""
    return (round_up(shape_yx[0], stride), round_up(shape_yx[1], stride))


def pad_to(image: np.ndarray, shape_yx: Sequence[int]) -> np.ndarray:
    """Pad the last two axes of ``image`` at the bottom/right up to ``shape_yx``.

    Reflection (``numpy.pad(mode="reflect")``) when the image is large enough, else edge
    replication. Returns ``image`` itself when no padding is needed.
    """
    h, w = image.shape[-2:]
    ph, pw = int(shape_yx[0]) - h, int(shape_yx[1]) - w
    if ph < 0 or pw < 0:
        raise ValueError(f"cannot pad an image of {h}x{w} to the smaller {shape_yx[0]}x{shape_yx[1]}")
    if ph == 0 and pw == 0:
        return image
    widths = [(0, 0)] * (image.ndim - 2) + [(0, ph), (0, pw)]
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(image, widths, mode=mode)


@dataclass(frozen=True)
class Axis1D:
    """Tiles along one axis of the padded image.

    Attributes
    ----------
    length
        Padded length.
    valid
        Length of the real (unpadded) data.
    tile
        Tile length (a multiple of the stride, at most ``length``).
    starts
        Start of every tile.
    lo, hi
        Crop region of every tile, in image coordinates: tile ``i`` owns ``[lo[i], hi[i])``
        (the regions partition ``[0, valid)``; a region may be empty).
    """

    length: int
    valid: int
    tile: int
    starts: tuple[int, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]


def plan_axis(length: int, valid: int, tile: int, overlap: int) -> Axis1D:
    """Tile starts and crop regions along one axis (see :class:`Axis1D`).

    Tiles are ``tile`` long and overlap by at least ``overlap``; the last one ends at
    ``length``. The boundary between two neighbours is the middle of their overlap.
    """
    tile = min(tile, length)
    if tile >= length:
        starts = [0]
    else:
        if overlap >= tile:
            raise ValueError(f"overlap {overlap} must be smaller than the tile size {tile}")
        step = tile - overlap
        starts = list(range(0, length - tile, step))
        if not starts or starts[-1] != length - tile:
            starts.append(length - tile)
    bounds = [0] + [(starts[i + 1] + starts[i] + tile) // 2 for i in range(len(starts) - 1)] + [length]
    lo = tuple(min(b, valid) for b in bounds[:-1])
    hi = tuple(min(b, valid) for b in bounds[1:])
    return Axis1D(length, valid, tile, tuple(starts), lo, hi)


def ramp_weights(axis: Axis1D, index: int, guard: int, overlap: int) -> np.ndarray:
    """1-D blending weight of tile ``index`` along ``axis`` (float64, tile-long).

    The weight is 0 within ``guard`` pixels of an edge shared with a neighbour, rises as
    ``sin**2`` over the next ``overlap - 2 guard`` pixels, and is 1 elsewhere (edges on the
    image border keep weight 1). Two neighbours overlapping by exactly ``overlap`` pixels
    have weights summing to 1; with any overlap, every pixel has a tile of positive weight.
    """
    t = axis.tile
    ramp = max(1, overlap - 2 * guard)
    d = np.arange(t, dtype=np.float64) + 0.5  # distance of each pixel centre to the left edge
    w = np.ones(t)
    edges = []
    if index > 0:
        edges.append(d)
    if index < len(axis.starts) - 1:
        edges.append(t - d)
    for dist in edges:
        x = np.clip((dist - guard) / ramp, 0.0, 1.0)
        w *= np.sin(0.5 * np.pi * x) ** 2
    return w


@dataclass(frozen=True)
class Tile:
    """One tile: where it is read, and what it contributes.

    Attributes
    ----------
    y0, x0
        Top-left corner in the padded image; the tile is ``plan.tile_yx`` large.
    crop
        ``(y_from, y_to, x_from, x_to)`` region the tile owns in image coordinates
        (``"crop"`` stitching); empty tiles are dropped from the plan in that mode.
    iy, ix
        Tile index along y and x.
    """

    y0: int
    x0: int
    crop: tuple[int, int, int, int]
    iy: int
    ix: int


@dataclass(frozen=True)
class TilePlan:
    """How one field is cut into tiles and put back together.

    Attributes
    ----------
    shape_yx
        Size of the field.
    padded_yx
        Size after padding to a multiple of the stride.
    tile_yx
        Tile size.
    overlap
        Overlap between neighbouring tiles (a multiple of the stride).
    mode
        ``"crop"`` or ``"blend"``.
    guard
        Pixels next to a shared edge given weight 0 in ``"blend"`` mode.
    tiles
        The tiles, row by row.
    """

    shape_yx: tuple[int, int]
    padded_yx: tuple[int, int]
    tile_yx: tuple[int, int]
    overlap: int
    mode: BlendMode
    guard: int
    tiles: tuple[Tile, ...]
    axes: tuple[Axis1D, Axis1D]

    @property
    def whole(self) -> bool:
        """Whether the field is one tile (no stitching needed)."""
        return len(self.tiles) == 1 and self.tile_yx == self.padded_yx

    def weights(self, tile: Tile) -> np.ndarray:
        """2-D blending weight (float32, ``tile_yx``) of ``tile`` (``"blend"`` mode)."""
        wy = ramp_weights(self.axes[0], tile.iy, self.guard, self.overlap)
        wx = ramp_weights(self.axes[1], tile.ix, self.guard, self.overlap)
        return np.outer(wy, wx).astype(np.float32)


def plan_tiles(shape_yx: Sequence[int], *, tile_size: int | None, overlap: int, stride: int = 1,
               mode: BlendMode = "crop", guard: int | None = None) -> TilePlan:
    """Plan the tiles of a field of ``shape_yx``.

    Parameters
    ----------
    shape_yx
        Field size (any size; it is padded to a multiple of ``stride``).
    tile_size
        Tile side, rounded up to a multiple of ``stride``; ``None`` (or a size at least the
        padded field) predicts the whole field at once.
    overlap
        Minimum overlap of neighbouring tiles, rounded up to a multiple of ``stride``.
        Use at least twice the receptive-field radius for exact stitching.
    stride
        Total downsampling factor of the network (``2**depth`` for a UNet).
    mode
        ``"crop"`` (keep the centre of each tile) or ``"blend"`` (cosine ramps).
    guard
        ``"blend"`` only: pixels next to a shared edge that get weight 0 (default: a
        quarter of the overlap); capped so that the ramp keeps at least 2 pixels.

    Raises
    ------
    ValueError
        If the overlap is not smaller than the tile size, or a size is not positive.
    """
    if min(shape_yx) < 1:
        raise ValueError(f"field shape must be positive, got {tuple(shape_yx)}")
    if mode not in ("crop", "blend"):
        raise ValueError(f"unknown blending mode {mode!r} (use 'crop' or 'blend')")
    stride = max(1, int(stride))
    hp, wp = padded_shape(shape_yx, stride)
    ov = round_up(max(0, int(overlap)), stride)
    if tile_size is None:
        ty, tx = hp, wp
    else:
        if tile_size < 1:
            raise ValueError(f"tile size must be positive, got {tile_size}")
        t = round_up(int(tile_size), stride)
        ty, tx = min(t, hp), min(t, wp)
    ay = plan_axis(hp, int(shape_yx[0]), ty, ov)
    ax = plan_axis(wp, int(shape_yx[1]), tx, ov)
    g = ov // 4 if guard is None else int(guard)
    g = max(0, min(g, (ov - 2) // 2))
    tiles = []
    for iy, y0 in enumerate(ay.starts):
        for ix, x0 in enumerate(ax.starts):
            crop = (ay.lo[iy], ay.hi[iy], ax.lo[ix], ax.hi[ix])
            if mode == "crop" and (crop[0] >= crop[1] or crop[2] >= crop[3]):
                continue
            tiles.append(Tile(y0, x0, crop, iy, ix))
    return TilePlan((int(shape_yx[0]), int(shape_yx[1])), (hp, wp), (ay.tile, ax.tile), ov, mode, g,
                    tuple(tiles), (ay, ax))


def stitch(plan: TilePlan, out: Any, tiles: Sequence[Any], which: Sequence[Tile],
           acc: Any | None = None, weights: Sequence[Any] | None = None) -> None:
    """Add predicted ``tiles`` (``(..., ty, tx)``) of ``which`` into ``out`` (``(..., y, x)``).

    ``"crop"``: copies each tile's own region into ``out`` (field-sized). ``"blend"``:
    accumulates ``w * tile`` into ``out`` and ``w`` into ``acc`` (both padded-field-sized);
    call :func:`finish_blend` once all tiles are in. Works on numpy arrays and torch tensors.
    """
    for k, (t, pred) in enumerate(zip(which, tiles)):
        if plan.mode == "crop":
            y1, y2, x1, x2 = t.crop
            out[..., y1:y2, x1:x2] = pred[..., y1 - t.y0:y2 - t.y0, x1 - t.x0:x2 - t.x0]
        else:
            if acc is None or weights is None:
                raise ValueError("blend stitching needs an accumulator and the tile weights")
            ty, tx = plan.tile_yx
            w = weights[k]
            out[..., t.y0:t.y0 + ty, t.x0:t.x0 + tx] += pred * w
            acc[..., t.y0:t.y0 + ty, t.x0:t.x0 + tx] += w


def finish_blend(plan: TilePlan, out: Any, acc: Any) -> Any:
    """Divide the blended sum by the summed weights and crop the padding away."""
    h, w = plan.shape_yx
    return out[..., :h, :w] / acc[..., :h, :w]
