"""Output safety: what ``--overwrite`` may remove, outputs apart from inputs, write errors.

The single owner of these checks; the stage driver (:mod:`jumpdenoise.driver`) applies them
once for every stage, and the few commands that are not stages (``export-tiff``) call them.
The lock an output is held with while it is written is :mod:`jumpdenoise.io.output_lock`.

- :func:`check_apart` refuses an output equal to or inside an input, or an input inside the
  output (paths resolved, symlinks followed), before anything is written.
- :func:`recognise` tells whether a path is something jumpdenoise wrote, by its own
  markers; :func:`remove_output` removes only such a path, and refuses anything else.
- :func:`write_error` turns an ``OSError`` of writing (read-only, permission, no space)
  into one :class:`~jumpdenoise.errors.OutputWriteError` line naming the path.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from jumpdenoise.errors import OutputWriteError, UnsafeOutputError
from jumpdenoise.io.ngff_markers import NGFF_V04_MANIFEST, SIDECAR

#: Marker file of a folder written by ``jumpdenoise export-tiff``.
EXPORT_MARKER = ".jumpdenoise-export.json"
#: Files of a pipeline run folder (``jumpdenoise run`` / ``submit``).
RUN_STATE_MARKERS = ("pipeline_state.json", ".pipeline")
#: Files every training run folder holds (``jumpdenoise train``).
TRAIN_RUN_MARKERS = ("config.yaml", "normalization.json", "split.json")


def resolved(path: str | Path) -> Path:
    """``path`` absolute, with ``~`` expanded and symlinks followed (it need not exist)."""
    return Path(path).expanduser().resolve()


# ----------------------------------------------------------------------------- inputs vs outputs


def check_apart(output: str | Path, inputs: Iterable[str | Path | None] = (),
                protected: Iterable[str | Path | None] = ()) -> None:
    """Refuse an output that overlaps what it is made from.

    Parameters
    ----------
    output
        The output (plate, run folder, export folder).
    inputs
        Folders or files read to make it: the output may be neither equal to nor inside one
        of them, and none of them may lie inside the output.
    protected
        Files or folders that must survive the output's replacement: none may be the output
        or lie inside it (the output may lie inside them, e.g. a plate in a model's folder).

    Raises
    ------
    UnsafeOutputError
        Naming both paths.
    """
    out = resolved(output)
    for given in inputs:
        if given is None:
            continue
        src = resolved(given)
        if out == src:
            raise UnsafeOutputError(f"output {output} is the input {given}; choose another output")
        if src in out.parents and src.is_dir():
            raise UnsafeOutputError(f"output {output} lies inside the input {given}; write it elsewhere")
    for given in [*inputs, *protected]:
        if given is None:
            continue
        src = resolved(given)
        if out == src:
            raise UnsafeOutputError(f"output {output} is the input {given}; choose another output")
        if out in src.parents:
            raise UnsafeOutputError(f"input {given} lies inside the output {output}; replacing the output "
                                    "would delete it: choose another output")


# ----------------------------------------------------------------------------- recognising outputs


def _is_our_plate(path: Path) -> bool:
    meta = path / "zarr.json"
    if not (path / SIDECAR).is_dir() or not meta.is_file():
        return False
    try:
        attrs = json.loads(meta.read_text()).get("attributes") or {}
    except (OSError, ValueError):
        return False
    return isinstance(attrs, dict) and "jumpdenoise" in attrs


def recognise(path: str | Path) -> str | None:
    """What jumpdenoise output ``path`` is, by its own markers, or ``None``.

    Returns
    -------
    str or None
        ``"plate"`` (``zarr.json`` with jumpdenoise attributes and a ``.jumpdenoise``
        sidecar), ``"run folder"`` (pipeline run state), ``"training run"``,
        ``"TIFF export"`` (export marker), ``"NGFF 0.4 export"`` (its manifest in the sidecar)
        or ``"empty folder"``; ``None`` for anything else.
    """
    p = Path(path)
    if p.is_symlink() or not p.is_dir():
        return None
    if _is_our_plate(p):
        return "plate"
    if any((p / m).exists() for m in RUN_STATE_MARKERS):
        return "run folder"
    if all((p / m).is_file() for m in TRAIN_RUN_MARKERS):
        return "training run"
    if (p / EXPORT_MARKER).is_file():
        return "TIFF export"
    if (p / SIDECAR / NGFF_V04_MANIFEST).is_file():
        return "NGFF 0.4 export"
    if not any(p.iterdir()):
        return "empty folder"
    return None


def _contents(p: Path, limit: int = 3) -> str:
    try:
        names = sorted(os.listdir(p))
    except OSError:
        return ""
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return f" (it holds {shown})" if names else ""


def check_removable(path: str | Path, expected: str | tuple[str, ...]) -> None:
    """Raise unless ``path`` is absent or a jumpdenoise output of kind ``expected``.

    Raises
    ------
    UnsafeOutputError
        Naming the path and why it is not removed (not written by jumpdenoise, or another
        kind of jumpdenoise output).
    """
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return
    kinds = (expected,) if isinstance(expected, str) else expected
    found = recognise(p)
    if found == "empty folder" or found in kinds:
        return
    if found is None:
        what = "a symbolic link" if p.is_symlink() else "a file" if not p.is_dir() else "a folder"
        raise UnsafeOutputError(f"--overwrite refused: {path} is {what} that jumpdenoise did not write"
                                f"{_contents(p) if p.is_dir() else ''}; nothing was deleted, choose another "
                                "output or remove it yourself")
    raise UnsafeOutputError(f"--overwrite refused: {path} is a jumpdenoise {found}, not a {' or '.join(kinds)}; "
                            "nothing was deleted")


def remove_output(path: str | Path, expected: str | tuple[str, ...]) -> None:
    """Remove ``path`` if (and only if) it is a jumpdenoise output of kind ``expected``.

    Raises
    ------
    UnsafeOutputError
        See :func:`check_removable`; nothing is removed then.
    """
    check_removable(path, expected)
    p = Path(path)
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def mark_export_folder(folder: str | Path) -> None:
    """Write the marker by which :func:`recognise` knows a ``jumpdenoise export-tiff`` folder."""
    from jumpdenoise import __version__

    (Path(folder) / EXPORT_MARKER).write_text(json.dumps({"written_by": "jumpdenoise export-tiff",
                                                          "version": __version__}) + "\n")


# ----------------------------------------------------------------------------- write errors


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def is_write_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an ``OSError`` of a full, read-only or forbidden output."""
    return isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC,
                                                      errno.EDQUOT)


def write_error(exc: OSError, path: str | Path | None = None, needed: int | None = None) -> OutputWriteError:
    """One-line error for an ``OSError`` raised while writing ``path`` (or ``exc.filename``).

    Parameters
    ----------
    exc
        The error.
    path
        The output written, when ``exc`` does not name a file.
    needed
        Bytes the write needed, when known (shown for a full disk).
    """
    target = Path(exc.filename) if exc.filename else Path(path) if path is not None else None
    where = str(target) if target is not None else "the output"
    if exc.errno == errno.EROFS:
        cause = "read-only file system"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        cause = "permission denied"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        cause = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        if target is not None:
            try:
                free = shutil.disk_usage(_existing_ancestor(target)).free
                cause += f" ({_size(free)} free" + (f", {_size(needed)} needed" if needed else "") + ")"
            except OSError:
                pass
    else:
        cause = exc.strerror or type(exc).__name__
    return OutputWriteError(where, cause)
