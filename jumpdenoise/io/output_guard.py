"""Output safety: what ``--overwrite`` may remove, outputs apart from inputs, the output lock.

The single owner of these checks; the stage driver (:mod:`jumpdenoise.driver`) applies them
once for every stage, and the few commands that are not stages (``export-tiff``) call them.

- :func:`check_apart` refuses an output equal to or inside an input, or an input inside the
  output (paths resolved, symlinks followed), before anything is written.
- :func:`recognise` tells whether a path is something jumpdenoise wrote, by its own
  markers; :func:`remove_output` removes only such a path, and refuses anything else.
- :class:`OutputLock` is a lock FILE beside the output (host, pid, start, run token), taken
  with ``O_CREAT | O_EXCL`` and kept fresh by a heartbeat, so that it works on shared
  cluster file systems where ``flock`` does not. A lock is stale when its process is dead
  (same host) or its heartbeat is older than ``stale_s`` (other hosts); a stale lock is
  taken over. The processes of one run share a token (:data:`RUN_TOKEN_ENV`), for which the
  lock is reentrant: the prepare and finalize jobs of one SLURM run never block each other.
- :func:`write_error` turns an ``OSError`` of writing (read-only, permission, no space)
  into one :class:`~jumpdenoise.errors.OutputWriteError` line naming the path.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from jumpdenoise.errors import OutputInUseError, OutputWriteError, UnsafeOutputError
from jumpdenoise.io.ngff_markers import NGFF_V04_MANIFEST, SIDECAR

#: Environment variable carrying a run's lock token to the jobs of that run.
RUN_TOKEN_ENV = "JUMPDENOISE_RUN_TOKEN"
#: Suffix of the lock file ``.<output name>.jumpdenoise-lock`` written beside an output.
LOCK_SUFFIX = ".jumpdenoise-lock"
#: Marker file of a folder written by ``jumpdenoise export-tiff``.
EXPORT_MARKER = ".jumpdenoise-export.json"
#: Files of a pipeline run folder (``jumpdenoise run`` / ``submit``).
RUN_STATE_MARKERS = ("pipeline_state.json", ".pipeline")
#: Files every training run folder holds (``jumpdenoise train``).
TRAIN_RUN_MARKERS = ("config.yaml", "normalization.json", "split.json")
#: Default age (seconds) after which the lock of a process on another host counts as stale.
DEFAULT_STALE_S = 900.0


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


# ----------------------------------------------------------------------------- lock


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says: who holds the output, since when, for which run."""

    host: str
    pid: int
    since: str
    token: str

    def alive_here(self) -> bool:
        """Whether the holder runs on this host and its process is alive."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, owned by another user
            return True
        return True


def lock_path(target: str | Path) -> Path:
    """The lock file of ``target``: ``.<name>.jumpdenoise-lock`` in the same folder."""
    t = resolved(target)
    return t.with_name(f".{t.name}{LOCK_SUFFIX}")


class OutputLock:
    """A lock file on an output, safe on shared cluster file systems (see module docstring).

    Parameters
    ----------
    target
        The output (plate, run folder); the lock file lies beside it.
    token
        The run's token: a lock holding the same token is shared, not contended (default:
        ``$JUMPDENOISE_RUN_TOKEN``, else a new token).
    stale_s
        Heartbeat age after which a lock of another host counts as stale.
    wait_s
        How long to wait for a held lock before giving up (0: give up at once).
    """

    def __init__(self, target: str | Path, *, token: str | None = None, stale_s: float = DEFAULT_STALE_S,
                 wait_s: float = 0.0) -> None:
        self.target = Path(target)
        self.path = lock_path(target)
        self.token = token or os.environ.get(RUN_TOKEN_ENV) or uuid.uuid4().hex
        self.stale_s = float(stale_s)
        self.wait_s = float(wait_s)
        self.owned = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- reading --------------------------------------------------------------------
    def holder(self) -> LockHolder | None:
        """The current holder, or ``None`` when the lock file is absent or unreadable."""
        try:
            data = json.loads(self.path.read_text())
            return LockHolder(str(data["host"]), int(data["pid"]), str(data["since"]), str(data["token"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return 0.0

    def _stale(self, holder: LockHolder | None) -> bool:
        if holder is None:  # half-written: stale once it is older than a few heartbeats
            return self._age() > min(self.stale_s, 30.0)
        if holder.host == socket.gethostname():
            return not holder.alive_here()
        return self._age() > self.stale_s

    # -- taking ---------------------------------------------------------------------
    def _create(self) -> bool:
        record = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        return True

    def _take_over(self, seen: LockHolder | None) -> None:
        """Move a stale lock aside; put it back if another process replaced it meanwhile."""
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text())
            same = seen is not None and moved.get("token") == seen.token and int(moved.get("pid", -1)) == seen.pid
        except (OSError, ValueError, TypeError):
            same = seen is None
        if not same:  # a fresh lock of another process: restore it unless a newer one exists
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        aside.unlink(missing_ok=True)

    def acquire(self) -> "OutputLock":
        """Take the lock (or share it: same token).

        Raises
        ------
        OutputInUseError
            ``"<target> is in use by host:pid since ..."`` when another live run holds it.
        OutputWriteError
            When the lock cannot be written (read-only, permission, full disk).
        """
        deadline = time.monotonic() + self.wait_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            while True:
                if self._create():
                    self.owned = True
                    self._start_heartbeat()
                    return self
                holder = self.holder()
                if holder is not None and holder.token == self.token:
                    return self  # the same run (e.g. a SLURM job of it): shared, not owned
                if self._stale(holder):
                    self._take_over(holder)
                    continue
                if time.monotonic() >= deadline:
                    who = f"{holder.host}:{holder.pid} since {holder.since}" if holder else "another process"
                    raise OutputInUseError(f"{self.target} is in use by {who} (lock {self.path}); wait for that "
                                           "run to end, or remove the lock file if it is gone")
                time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
        except OSError as exc:
            if is_write_error(exc):  # named by the output, not its lock file
                raise OutputWriteError(str(self.target), write_error(exc, self.path).cause) from None
            raise

    def _start_heartbeat(self) -> None:
        interval = max(1.0, min(60.0, self.stale_s / 4))

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    os.utime(self.path)
                except OSError:
                    return

        self._stop.clear()
        self._beat = threading.Thread(target=beat, name=f"lock-{self.target.name}", daemon=True)
        self._beat.start()

    def release(self) -> None:
        """Remove the lock file if this object took it and it still holds this token."""
        if not self.owned:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        holder = self.holder()
        if holder is not None and holder.token == self.token and holder.pid == os.getpid():
            self.path.unlink(missing_ok=True)
        self.owned = False

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
