"""The output lock: :class:`OutputLock`, a lock FILE beside an output while it is written.

The lock file (host, pid, start, run token) is taken with ``O_CREAT | O_EXCL`` and kept fresh
by a heartbeat, so that it works on shared cluster file systems where ``flock`` does not. A
lock is stale when its process is dead (same host) or its heartbeat is older than
``stale_s`` (other hosts); a stale lock is taken over. The processes of one run share a token
(:data:`RUN_TOKEN_ENV`), for which the lock is reentrant: the prepare and finalize jobs of
one SLURM run never block each other. The other output checks are
:mod:`jumpdenoise.io.output_guard`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from jumpdenoise.errors import OutputInUseError, OutputWriteError
from jumpdenoise.io.output_guard import is_write_error, resolved, write_error

#: Environment variable carrying a run's lock token to the jobs of that run.
RUN_TOKEN_ENV = "JUMPDENOISE_RUN_TOKEN"
#: Suffix of the lock file ``.<output name>.jumpdenoise-lock`` written beside an output.
LOCK_SUFFIX = ".jumpdenoise-lock"
#: Default age (seconds) after which the lock of a process on another host counts as stale.
DEFAULT_STALE_S = 900.0


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
