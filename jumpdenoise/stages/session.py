"""What the units of one stage share in one process: :class:`PlateSession`.

The stage driver (:func:`jumpdenoise.driver.run_stage`) makes one session per stage run and
passes it to the stage functions (``prepare``, ``run_one``, ``run_many``, ``finalize``); a
worker process gets its own, never pickled: a Dask worker process holds one for the whole
stage run (:class:`~jumpdenoise.executors.dask_session.WorkerSessionPlugin`), a SLURM task or a
process of a local pool one per call of :class:`~jumpdenoise.stages.base.BoundUnit`. What a
stage caches across units (the loaded model and its predictor, parsed plate layouts, the
writer processes of prediction) lives in the session and goes with it: nothing is kept in
module globals, so what a stage function does never depends on what ran before in the
process. :meth:`PlateSession.close` releases it all (the driver calls it when the stage
ends; a session is also a context manager).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, TypeVar

if TYPE_CHECKING:
    from jumpdenoise.predict.writers import WriterPool

__all__ = ["PlateSession", "PAYLOAD_LIMIT_BYTES", "PAYLOADS_KEY", "live_session", "session_or_own"]

T = TypeVar("T")

#: Memory the done-marker payloads kept for a finalize in the same process may take (5-250 kB
#: per field, with their sparse histograms); fields beyond it are read back from their markers.
PAYLOAD_LIMIT_BYTES = 256 << 20


#: The key of a unit result's bulky values for a finalize in the same process (e.g. done-marker
#: payloads): the driver hands them to ``finalize`` in the outcomes and never records them.
PAYLOADS_KEY = "payloads"


#: The sessions open in this process, by their reference: how a task that an executor pickled
#: and runs in this same process (a threaded Dask cluster pickles its tasks) finds the session
#: of its driver. Weak: a session leaves it when closed or dropped, so a reference never
#: reaches a session of another run.
_OPEN: weakref.WeakValueDictionary[tuple[int, int], PlateSession] = weakref.WeakValueDictionary()
_NUMBERS = itertools.count()


def live_session(reference: tuple[int, int] | None) -> PlateSession | None:
    """The open session of this process with ``reference`` (:attr:`PlateSession.reference`),
    or ``None`` (closed, or made in another process)."""
    if reference is None or reference[0] != os.getpid():  # a forked child holds copies: never used
        return None
    return _OPEN.get(reference)


class PlateSession:
    """The per-process state of one stage run: caches, the writer pool, the payload budget.

    Parameters
    ----------
    keeps_payloads
        Whether unit results may carry what finalize would otherwise read back from disk
        (prediction's done-marker payloads). True in the driver's process, which finalizes;
        false in worker processes, whose results travel to another process.
    payload_limit_bytes
        How many bytes of such payloads the session's units may keep in all.
    """

    def __init__(self, *, keeps_payloads: bool = True, payload_limit_bytes: int = PAYLOAD_LIMIT_BYTES) -> None:
        self.keeps_payloads = bool(keeps_payloads)
        self.payload_bytes_left = int(payload_limit_bytes) if keeps_payloads else 0
        self._cache: dict[Hashable, Any] = {}
        self._lock = threading.RLock()  # units may run as threads of one process
        self._writers: WriterPool | None = None
        self.closed = False
        #: ``(process id, number)``: names this session across a pickling in the same process
        self.reference = (os.getpid(), next(_NUMBERS))
        _OPEN[self.reference] = self

    def cached(self, key: Hashable, make: Callable[[], T]) -> T:
        """The value stored under ``key``, made by ``make()`` the first time (thread-safe:
        threads asking for the same key wait for one ``make``)."""
        with self._lock:
            if self.closed:
                raise RuntimeError("this PlateSession is closed")
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    @property
    def writer_pool(self) -> WriterPool:
        """The session's writer processes of prediction (started on first use, stopped by :meth:`close`)."""
        from jumpdenoise.predict.writers import WriterPool

        with self._lock:
            if self.closed:
                raise RuntimeError("this PlateSession is closed")
            if self._writers is None:
                self._writers = WriterPool()
            return self._writers

    def keep_payload(self, nbytes: int) -> bool:
        """Whether a payload of ``nbytes`` may be kept in a unit result (and count it if so)."""
        with self._lock:
            if nbytes > self.payload_bytes_left:
                return False
            self.payload_bytes_left -= nbytes
            return True

    def close(self) -> None:
        """Stop the writer processes and drop the caches (idempotent)."""
        with self._lock:
            self.closed = True
            _OPEN.pop(self.reference, None)
            writers, self._writers = self._writers, None
            self._cache.clear()
        if writers is not None:
            writers.close()

    def __enter__(self) -> PlateSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def session_or_own(session: PlateSession | None, *, keeps_payloads: bool = True) -> Iterator[PlateSession]:
    """``session``, or a session of this block (closed when it ends) when ``session`` is ``None``."""
    if session is not None:
        yield session
        return
    with PlateSession(keeps_payloads=keeps_payloads) as own:
        yield own
