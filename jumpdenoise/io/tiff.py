"""Reading single planes and whole fields from TIFF files, safely and fast.

This is the conversion hot path: every plane of a plate goes through :func:`read_plane`.
Each file is opened once (one :class:`tifffile.TiffFile`), checked *before* decoding
(page present, expected shape and dtype, every strip inside the file) and once more after
decoding. tifffile reads a file cut short as an empty or partial array with nothing but a
logged warning; these checks turn every such case into an :class:`ImageError` naming the
file.

Decoding: single-plane LZW files (the Phenix exports of JUMP) are decoded by libtiff through
:func:`imagecodecs.tiff_decode` straight into the output array: measured 9.2 ms per 1080 x 1080
16-bit plane against 14.5 ms for imagecodecs' own LZW decoder that tifffile uses (lossless, so
the pixels are the same). Anything else, and any file libtiff refuses, is decoded by tifffile,
whose errors give the messages.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from jumpdenoise.errors import ImageError
from jumpdenoise.io.layout import FieldLayout, PlaneRef

__all__ = ["probe", "read_multichannel", "read_plane", "read_source_field"]

log = logging.getLogger("jumpdenoise.tiff")


class _ThreadRecords(logging.Filter):
    """Keeps (and stops) the log records of one thread; the others pass."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)
        return False


@contextlib.contextmanager
def tifffile_log(path: str) -> Iterator[None]:
    """Capture what tifffile logs while this thread reads ``path``.

    tifffile logs a damaged file's problems (e.g. "invalid offset to first page") instead
    of raising. An :class:`ImageError` raised inside gets them appended to its reason; when
    the file reads well they are logged as warnings naming the file.
    """
    logger = logging.getLogger("tifffile")
    records = _ThreadRecords()
    logger.addFilter(records)
    try:
        yield
    except ImageError as exc:
        if not records.messages:
            raise
        raise ImageError(exc.path, f"{exc.reason} (tifffile: {'; '.join(records.messages)})") from None
    finally:
        logger.removeFilter(records)
    for message in records.messages:
        log.warning("%s: tifffile: %s", path, message)


def open_tiff(path: str):
    """Open ``path`` with tifffile, mapping every failure to :class:`ImageError`."""
    import tifffile

    try:
        return tifffile.TiffFile(path)
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a directory, not a TIFF file") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        raise ImageError(path, f"not a readable TIFF file ({type(exc).__name__}: {exc})") from None


def _check_extents(path: str, pages, file_size: int) -> None:
    """Raise if a page has no data or a strip/tile lies (partly) beyond the end of the file."""
    for page in pages:
        offsets, counts = page.dataoffsets, page.databytecounts
        if not offsets or len(offsets) != len(counts):
            raise ImageError(path, "corrupt TIFF: page has no strip/tile offsets")
        end = max(o + c for o, c in zip(offsets, counts))
        if end > file_size:
            raise ImageError(
                path,
                f"truncated TIFF: image data ends at byte {end} but the file has {file_size} bytes",
            )
        if min(counts) <= 0 and page.compression != 1:
            raise ImageError(path, "corrupt TIFF: a strip/tile has zero bytes")


def _first_page(path: str, tif):
    pages = tif.pages
    if len(pages) == 0:
        raise ImageError(path, "truncated or corrupt TIFF: no image (IFD) found in the file")
    return pages[0]


def _single_page(path: str, tif) -> None:
    """Raise if a file expected to hold one plane holds several images (pages)."""
    n_pages = len(tif.pages)
    if n_pages > 1:
        raise ImageError(path, f"holds {n_pages} images (pages) where one plane is expected; "
                               "convert it as a hyperstack, or keep one image per file")


def _decode(path: str, page, out=None) -> np.ndarray:
    try:
        return page.asarray(out=out, maxworkers=1)
    except Exception as exc:
        raise ImageError(path, f"corrupt TIFF: cannot decode image data ({type(exc).__name__}: {exc})") from None


_LIBTIFF_COMPRESSIONS = (5,)  # LZW: libtiff decodes it ~1.6x faster than imagecodecs' LZW


def _decode_libtiff(tif, page, out: np.ndarray | None) -> np.ndarray | None:
    """Decode the first page of a single-plane file with libtiff, or ``None`` when not applicable
    (other compression, several samples, libtiff unavailable) or when libtiff refuses the file
    (the caller then decodes with tifffile, whose error names the problem)."""
    if page.compression not in _LIBTIFF_COMPRESSIONS or page.samplesperpixel != 1 or page.index != 0:
        return None
    try:
        from imagecodecs import TIFF, tiff_decode
    except ImportError:
        return None
    if not TIFF.available:
        return None
    fh = tif.filehandle
    try:
        fh.seek(0)
        blob = fh.read(fh.size)
        return tiff_decode(blob, index=0, out=out)
    except Exception:  # noqa: BLE001 - corrupt data: tifffile decodes again and reports it
        return None


def _check_array(path: str, arr: np.ndarray, shape: tuple[int, ...], dtype: str, what: str = "image") -> None:
    if tuple(arr.shape) != tuple(shape):
        raise ImageError(path, f"{what} has shape {tuple(arr.shape)}, expected {tuple(shape)} like the rest of the plate")
    if arr.dtype != np.dtype(dtype):
        raise ImageError(path, f"{what} has dtype {arr.dtype}, expected {np.dtype(dtype).name} like the rest of the plate")


def read_plane(ref: PlaneRef, shape: tuple[int, int], dtype: str, *, out: np.ndarray | None = None) -> np.ndarray:
    """Read one 2-D plane and check it.

    Parameters
    ----------
    ref
        Where the plane is: a single-plane file (``channel_index is None``) or one channel
        of a multi-channel file (``axes`` ``"CYX"`` or ``"YXC"``).
    shape
        Expected (y, x) size.
    dtype
        Expected numpy dtype name, e.g. ``"uint16"``.
    out
        Optional C-contiguous array of ``shape`` and ``dtype`` to decode into (saves a copy).

    Returns
    -------
    numpy.ndarray
        The (y, x) plane.

    Raises
    ------
    ImageError
        The file is missing, not a TIFF, truncated, corrupt, or its plane has another
        shape or dtype than expected. The message names the file.
    """
    with tifffile_log(str(ref.path)):
        return _read_plane(ref, shape, dtype, out)


def _read_plane(ref: PlaneRef, shape: tuple[int, int], dtype: str, out: np.ndarray | None) -> np.ndarray:
    path = str(ref.path)
    shape = (int(shape[0]), int(shape[1]))
    if ref.channel_index is not None:
        arr = read_multichannel(path, ref.axes, shape, dtype, channels=[ref.channel_index])[0]
        if out is not None:
            out[...] = arr
            return out
        return arr
    with open_tiff(path) as tif:
        page = _first_page(path, tif)
        _single_page(path, tif)
        # Check metadata before decoding: cheap and gives the clearest message.
        if tuple(page.shape) != shape:
            raise ImageError(path, f"image has shape {tuple(page.shape)}, expected {shape} like the rest of the plate")
        if page.dtype != np.dtype(dtype):
            raise ImageError(path, f"image has dtype {page.dtype}, expected {np.dtype(dtype).name} like the rest of the plate")
        _check_extents(path, [page], tif.filehandle.size)
        arr = _decode_libtiff(tif, page, out)
        if arr is None:
            arr = _decode(path, page, out=out)
    _check_array(path, arr, shape, dtype)
    return arr


def squeeze_axes(shape: tuple[int, ...], axes: str) -> tuple[tuple[int, ...], str]:
    """Drop length-1 axes other than Y and X; tifffile's sample axis ``S`` counts as ``C``."""
    kept_shape, kept_axes = [], []
    for n, a in zip(shape, axes):
        if n == 1 and a not in "YX":
            continue
        kept_shape.append(n)
        kept_axes.append("C" if a == "S" else a)
    return tuple(kept_shape), "".join(kept_axes)


def read_multichannel(
    path: str, axes: str, shape: tuple[int, int], dtype: str, channels: list[int] | None = None
) -> np.ndarray:
    """Read channels of one multi-channel TIFF (hyperstack) as a (c, y, x) array.

    Parameters
    ----------
    path
        The TIFF file.
    axes
        ``"CYX"`` or ``"YXC"`` (after dropping length-1 axes); ``"YX"`` for a single plane.
    shape
        Expected (y, x) size.
    dtype
        Expected dtype name.
    channels
        Channel indices to return, in this order (default: all).

    Raises
    ------
    ImageError
        Missing, truncated or corrupt file, or shape, dtype or axes unlike expected.
    """
    path = str(path)
    with tifffile_log(path):
        return _read_multichannel(path, axes, shape, dtype, channels)


def _read_multichannel(path: str, axes: str, shape: tuple[int, int], dtype: str,
                       channels: list[int] | None) -> np.ndarray:
    with open_tiff(path) as tif:
        _first_page(path, tif)
        size = tif.filehandle.size
        series = tif.series[0]
        sshape, saxes = squeeze_axes(tuple(series.shape), series.axes)
        if len(sshape) != len(axes):
            raise ImageError(path, f"array has shape {tuple(series.shape)} (axes {series.axes}); expected axes {axes}")
        if series.dtype != np.dtype(dtype):
            raise ImageError(path, f"image has dtype {series.dtype}, expected {np.dtype(dtype).name} like the rest of the plate")
        yx = tuple(n for n, a in zip(sshape, axes) if a != "C")
        if yx != tuple(shape):
            raise ImageError(path, f"image has (y, x) shape {yx}, expected {tuple(shape)} like the rest of the plate")
        n_channels = sshape[axes.index("C")] if "C" in axes else 1
        wanted = list(range(n_channels)) if channels is None else list(channels)
        bad = [c for c in wanted if not 0 <= c < n_channels]
        if bad:
            raise ImageError(path, f"channel index {bad[0]} out of range: the file has {n_channels} channel(s)")
        pages = series.pages
        one_page_per_channel = axes == "CYX" and len(pages) == n_channels
        if one_page_per_channel:
            chosen = [pages[c] for c in wanted]
            _check_extents(path, chosen, size)
            out = np.empty((len(wanted), *shape), dtype=dtype)
            for i, page in enumerate(chosen):
                if tuple(page.shape) != tuple(shape):
                    raise ImageError(path, f"page {wanted[i]} has shape {tuple(page.shape)}, expected {tuple(shape)}")
                out[i] = _decode(path, page)
            return out
        _check_extents(path, [p for p in pages if p is not None], size)
        try:
            arr = series.asarray(maxworkers=1)
        except Exception as exc:
            raise ImageError(path, f"corrupt TIFF: cannot decode image data ({type(exc).__name__}: {exc})") from None
    expected = sshape
    if arr.size != int(np.prod(expected)):
        raise ImageError(path, f"truncated or corrupt TIFF: decoded {arr.size} values, expected {int(np.prod(expected))}")
    arr = arr.reshape(expected)
    if axes == "YX":
        arr = arr[None]
    elif axes == "YXC":
        arr = np.moveaxis(arr, -1, 0)
    _check_array(path, arr[0], shape, dtype)
    return np.ascontiguousarray(arr[wanted])


def read_source_field(field: FieldLayout, channels: list[str], shape: tuple[int, int], dtype: str) -> np.ndarray:
    """Read the planes of one field as a (c, y, x) array, channels in the given order.

    Single-plane files are decoded straight into the output; a multi-channel file is read
    once for all the channels it holds.

    Raises
    ------
    ImageError
        A channel has no file in this field, or a file is missing, truncated, corrupt or
        unlike ``shape``/``dtype``.
    """
    out = np.empty((len(channels), int(shape[0]), int(shape[1])), dtype=dtype)
    by_file: dict[str, list[tuple[int, PlaneRef]]] = {}
    for c, name in enumerate(channels):
        ref = field.planes.get(name)
        if ref is None:
            where = next(iter(field.planes.values())).path if field.planes else f"field {field.site}"
            raise ImageError(
                str(Path(where).parent) if field.planes else where,
                f"field (site {field.site}) has no image for channel {name!r}",
            )
        if ref.channel_index is None:
            read_plane(ref, shape, dtype, out=out[c])
        else:
            by_file.setdefault(ref.path, []).append((c, ref))
    for path, items in by_file.items():
        data = read_multichannel(path, items[0][1].axes, shape, dtype, channels=[r.channel_index for _, r in items])
        for i, (c, _) in enumerate(items):
            out[c] = data[i]
    return out


def probe(path: str | Path, axes: str = "YX") -> tuple[tuple[int, int], str]:
    """Return the (y, x) shape and dtype name of a TIFF without decoding its pixels.

    Parameters
    ----------
    path
        A single-plane TIFF (``axes="YX"``) or a multi-channel one (``"CYX"``, ``"YXC"``).
    axes
        Axis order of the file after dropping length-1 axes.

    Raises
    ------
    ImageError
        The file cannot be opened as a TIFF.
    """
    path = str(path)
    with tifffile_log(path), open_tiff(path) as tif:
        page = _first_page(path, tif)
        if axes == "YX":
            _single_page(path, tif)
            shp = tuple(page.shape)
            if len(shp) != 2:
                raise ImageError(path, f"expected a single 2-D plane, found shape {shp} (axes {page.axes})")
            return (int(shp[0]), int(shp[1])), np.dtype(page.dtype).name
        series = tif.series[0]
        sshape, _ = squeeze_axes(tuple(series.shape), series.axes)
        if len(sshape) != len(axes):
            raise ImageError(path, f"array has shape {tuple(series.shape)}; expected axes {axes}")
        yx = tuple(int(n) for n, a in zip(sshape, axes) if a != "C")
        return (yx[0], yx[1]), np.dtype(series.dtype).name
