"""A plate's sidecar folder ``PLATE/.jumpdenoise/``: the names of what it holds (the one place
that defines them, see docs/FORMATS.md) and the completion markers of the plate's units,
``PLATE/.jumpdenoise/<namespace>/<KEY>.npz``.

A marker is written atomically (temporary file, then rename) after the unit's data, never
before; it may carry a payload of arrays (e.g. partial statistics). Re-exported by
:mod:`jumpdenoise.io.ngff`.

Durability: the marker is not fsynced, like the chunk data it vouches for (zarr does not
fsync them either). A killed process (even SIGKILL) cannot leave a marker without its data:
both are in the page cache in the order they were written. A power loss or kernel crash
can, so only process crashes are covered; an fsync per field (~10 ms of waiting) would
not make the data durable anyway.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np

from jumpdenoise.errors import PlateError

#: The sidecar folder of a plate (``PLATE/.jumpdenoise/``, outside the zarr hierarchy): this module
#: is the one owner of its name and of the names of what it holds (docs/FORMATS.md).
SIDECAR = ".jumpdenoise"
#: Marker namespace of field completion (``.jumpdenoise/done/<WELL>-<FIELD>.npz``).
DONE = "done"
#: Marker namespace of the per-well partial statistics of the stats stage (``stats/<WELL>.npz``).
STATS_NAMESPACE = "stats"
#: Marker namespace of the fields an NGFF 0.4 export has written (``done_v04/<WELL>-<FIELD>.npz``).
DONE_V04 = "done_v04"
#: The PlateLayout a plate was converted from (raw plates; copied to derived plates).
LAYOUT_FILE = "layout.json"
#: Per-channel statistics (plate and per well).
STATISTICS_CSV = "statistics.csv"
#: Units that failed in the last run (key -> error).
FAILURES_FILE = "failures.json"
#: Images the source lists without a file (raw plates).
MISSING_IMAGES_CSV = "missing_images.csv"
#: The prediction record (selection, channels, fingerprint) of a denoised plate.
PREDICT_RECORD_FILE = "predict.json"
#: The raw-vs-denoised comparison table of a denoised plate.
COMPARISON_CSV = "comparison.csv"
#: The manifest of an NGFF 0.4 export (what ``--overwrite`` may replace).
NGFF_V04_MANIFEST = "export_ngff_v04.json"


def sidecar_path(plate: str | Path, *parts: str) -> Path:
    """``PLATE/.jumpdenoise/<parts...>``, e.g. ``sidecar_path(plate, LAYOUT_FILE)``."""
    return Path(plate).joinpath(SIDECAR, *parts)


def field_key(well: str, field: int) -> str:
    """Completion-marker key of a field: ``field_key("A01", 0) == "A01-0"``."""
    return f"{well}-{int(field)}"


def _marker(plate: str | Path, key: str, namespace: str) -> Path:
    if not key or "/" in key or key.startswith("."):
        raise ValueError(f"invalid marker key {key!r}")
    return sidecar_path(plate, namespace, f"{key}.npz")


def mark_done(plate: str | Path, key: str, payload: dict[str, np.ndarray] | None = None,
              namespace: str = DONE) -> None:
    """Record unit ``key`` as complete, atomically (temporary file, rename; no fsync, see
    the module docstring).

    Call only after the unit's data are written. ``payload`` (arrays, e.g. partial
    statistics) is stored in the marker and returned by :func:`load_done`.
    """
    target = _marker(plate, key, namespace)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **(payload or {}))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_done(plate: str | Path, key: str, namespace: str = DONE) -> bool:
    """Whether unit ``key`` has a completion marker."""
    return _marker(plate, key, namespace).is_file()


_NPY_HEADER = re.compile(r"\{'descr': '([^']+)', 'fortran_order': (True|False), 'shape': \(([0-9, ]*)\), \}")


def _npy_array(data: bytes) -> np.ndarray | None:
    """An array from ``.npy`` bytes, or ``None`` where the header is not the plain one."""
    if data[:6] != b"\x93NUMPY":
        return None
    major = data[6]
    size, start = (struct.unpack("<H", data[8:10])[0], 10) if major == 1 else (struct.unpack("<I", data[8:12])[0], 12)
    m = _NPY_HEADER.match(data[start:start + size].decode("latin1"))
    if m is None or m.group(2) == "True" or m.group(1).startswith("|O"):
        return None
    shape = tuple(int(v) for v in m.group(3).replace(" ", "").split(",") if v)
    dtype = np.dtype(m.group(1))
    count = int(np.prod(shape)) if shape else 1
    return np.frombuffer(data, dtype=dtype, count=count, offset=start + size).reshape(shape).copy()


def read_marker(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a marker (an ``.npz`` of :func:`numpy.savez`), like ``numpy.load`` gives them.

    numpy parses each member's header with ``ast.literal_eval`` (about 40 us per array);
    a field's marker holds ~36 small arrays, read for every field when a plate is
    finalized. Here the stored (uncompressed) members are sliced out of the file's bytes and
    their plain headers parsed with a regular expression: about 3x faster. Any member this
    does not recognise (compressed, object or Fortran-ordered arrays) is read by numpy.
    """
    raw = Path(path).read_bytes()
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(BytesIO(raw)) as zf:
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            arr = None
            if info.compress_type == zipfile.ZIP_STORED:
                n, e = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
                begin = info.header_offset + 30 + n + e
                arr = _npy_array(raw[begin: begin + info.file_size])
            if arr is None:
                arr = np.lib.format.read_array(BytesIO(zf.read(info)), allow_pickle=False)
            out[name] = arr
    return out


def load_done(plate: str | Path, key: str, namespace: str = DONE) -> dict[str, np.ndarray]:
    """The payload stored by :func:`mark_done` (raises :class:`PlateError` if there is none)."""
    path = _marker(plate, key, namespace)
    try:
        return read_marker(path)
    except FileNotFoundError:
        raise PlateError(f"{path}: no completion marker for {key}") from None
    except (OSError, ValueError, zipfile.BadZipFile, struct.error) as exc:
        raise PlateError(f"{path}: unreadable completion marker ({exc})") from None


def tracks_completion(plate: str | Path, namespace: str = DONE) -> bool:
    """Whether ``plate`` records the completion of its units in ``namespace`` (its marker
    folder exists: created when the units are planned, or by the first marker)."""
    return sidecar_path(plate, namespace).is_dir()


def track_completion(plate: str | Path, namespace: str = DONE) -> None:
    """Start recording completion in ``namespace``: from now on, a unit without a marker is
    not complete (see :func:`tracks_completion`)."""
    sidecar_path(plate, namespace).mkdir(parents=True, exist_ok=True)


def done_keys(plate: str | Path, namespace: str = DONE) -> set[str]:
    """Keys of every completed unit in ``namespace``."""
    folder = sidecar_path(plate, namespace)
    if not folder.is_dir():
        return set()
    return {n[:-4] for n in os.listdir(folder) if n.endswith(".npz") and not n.startswith(".")}


def clear_done(plate: str | Path, key: str | None = None, namespace: str = DONE) -> None:
    """Remove the marker of ``key``, or every marker of ``namespace`` when ``key`` is None."""
    if key is None:
        shutil.rmtree(sidecar_path(plate, namespace), ignore_errors=True)
    else:
        _marker(plate, key, namespace).unlink(missing_ok=True)
