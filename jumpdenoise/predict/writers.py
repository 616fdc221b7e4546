"""The write side of prediction: one field's writer, and writer processes fed through shared memory.

:class:`PlateFieldWriter` is what happens to a denoised field: converted to the output
dtype, written (level 0 and pyramid), its statistics partial and raw-vs-denoised partial
computed, then marked done (after its data, never before). It is a small picklable object,
so the same code runs in writer threads or in writer processes: same bytes either way.

:class:`WriterProcesses` runs such field writers in ``spawn``-ed processes (never ``fork``: the
parent may have initialised CUDA), past the parent's GIL. Fields travel through a ring of
field-sized slots in one :class:`multiprocessing.shared_memory.SharedMemory` block: the
parent copies the raw field and the prediction (device -> host straight into the slot) and
sends only ``(slot, key, writer)``; a slot is reused once its writer reports back, so memory
stays at ``slots`` fields. Writers ignore SIGINT (the parent decides), stop when the parent
dies, and the block is unlinked when the pool closes (or, after a crash of the parent, by
multiprocessing's resource tracker).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import queue
import signal
import sys
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from jumpdenoise.errors import JumpDenoiseError

log = logging.getLogger("jumpdenoise.predict")

__all__ = ["PlateFieldWriter", "WriterProcesses", "WriterDied", "to_output_dtype", "resolve_io_threads",
           "resolve_write_processes", "WriterPool"]

_ALIGN = 4096


def to_output_dtype(pred: np.ndarray, dtype: str) -> np.ndarray:
    """Float32 prediction -> stored pixels: unchanged for float, else rint + clip + cast."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return pred.astype(dt, copy=False)
    info = np.iinfo(dt)
    out = np.rint(pred)
    np.clip(out, info.min, info.max, out=out)
    return out.astype(dt)


@dataclass(frozen=True)
class PlateFieldWriter:
    """Store one denoised field of plate ``out`` (picklable: runs in threads or processes).

    ``writer((well, field), raw, pred)``: ``pred`` (float32, raw units) is converted to
    ``dtype`` (:func:`to_output_dtype`), written (temporaries of a killed earlier write
    removed, by :func:`~jumpdenoise.io.ngff.write_field`), and marked done with its statistics
    partial and its comparison partial (``cmp.*``) against ``raw``; returns that marker
    payload (a few kB), so that finalize in the same process need not read the marker back.
    """

    out: str
    dtype: str
    channels: tuple[str, ...]

    def __call__(self, key: tuple[str, int], raw: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
        from jumpdenoise.compute.stats import field_partial
        from jumpdenoise.io import ngff
        from jumpdenoise.predict.compare import field_comparison

        data = to_output_dtype(pred, self.dtype)
        ngff.write_field(self.out, key[0], key[1], data)
        partial = field_partial(data, list(self.channels))
        payload = {**partial, **field_comparison(raw, data, partial)}
        ngff.mark_done(self.out, ngff.field_key(*key), payload)
        return payload


def resolve_io_threads(setting: int | None) -> int:
    """Threads for a ``predict.experimental.io_threads`` setting: the writer threads, half as many readers.

    ``None`` (default): one per CPU, at most 8.
    """
    return setting or max(1, min(8, os.cpu_count() or 2))


def resolve_write_processes(setting: int | str, device_type: str) -> int:
    """Writer processes for a ``predict.experimental.write_processes`` setting (``0``: threads).

    ``"auto"``: on CUDA with at least 4 CPUs, ``min(8, CPUs - 2)`` processes (the
    parent keeps two CPUs: reading and driving the device); threads otherwise.
    """
    from jumpdenoise.compute.threads import cpu_threads

    if setting != "auto":
        return max(0, int(setting))
    cpus = cpu_threads()
    return min(8, cpus - 2) if device_type == "cuda" and cpus >= 4 else 0


class WriterDied(JumpDenoiseError):
    """A writer process ended unexpectedly (killed, out of memory)."""


def _portable(exc: BaseException) -> BaseException:
    """``exc`` with its traceback as a note, or a plain error with its text if it cannot be pickled."""
    text = "".join(traceback.format_exception(exc))
    try:
        exc.add_note(f"(in writer process {mp.current_process().name})\n{text}")
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - anything unpicklable
        return JumpDenoiseError(f"{type(exc).__name__}: {exc}")


def _views(buf: Any, slot_spec: tuple, slot: int) -> tuple[np.ndarray, np.ndarray]:
    (raw_shape, raw_dtype, raw_bytes), (pred_shape, pred_dtype, _), slot_bytes = slot_spec
    base = slot * slot_bytes
    raw = np.ndarray(raw_shape, np.dtype(raw_dtype), buffer=buf, offset=base)
    pred = np.ndarray(pred_shape, np.dtype(pred_dtype), buffer=buf, offset=base + raw_bytes)
    return raw, pred


def _warm_up() -> None:
    """Import and run the write path once on a tiny field, before the first task arrives.

    A fresh process otherwise spends about a second on its first field (imports of zarr,
    numcodecs and the statistics code, first-call set-ups), which would stall the first
    fields of every run.
    """
    try:
        import zarr  # noqa: F401
        from numcodecs import Blosc

        from jumpdenoise.compute.stats import field_partial
        from jumpdenoise.io import ngff  # noqa: F401
        from jumpdenoise.predict.compare import field_comparison

        raw = np.arange(2 * 64 * 64, dtype=np.uint16).reshape(2, 64, 64)
        data = to_output_dtype(raw.astype(np.float32) + 0.5, "float32")
        partial = field_partial(data, ["a", "b"])
        field_comparison(raw, data, partial)
        Blosc(cname="zstd", clevel=5, shuffle=Blosc.SHUFFLE).encode(data)
    except Exception:  # noqa: BLE001 - a warm-up only: the real write reports real errors
        log.debug("writer warm-up failed", exc_info=True)


def _writer_main(shm_name: str, slot_spec: tuple, tasks: Any, results: Any, stop: Any) -> None:
    """A writer process: take ``(slot, key, write)``, run ``write(key, raw, pred)``, report back."""
    from multiprocessing import shared_memory

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # one process is one writer, as a writer thread is (Blosc only threads on the main thread)
        from numcodecs import blosc

        blosc.use_threads = False
    except ImportError:  # pragma: no cover - numcodecs comes with zarr
        pass
    _warm_up()
    parent = mp.parent_process()
    shm = shared_memory.SharedMemory(name=shm_name)
    try:
        while not stop.is_set():
            if parent is not None and not parent.is_alive():
                break
            try:
                msg = tasks.get(timeout=0.5)
            except queue.Empty:
                continue
            if msg is None:
                break
            slot, key, write = msg
            raw, pred = _views(shm.buf, slot_spec, slot)
            value = None
            try:
                value = write(key, raw, pred)
                error = None
            except Exception as exc:  # noqa: BLE001 - reported per field
                error = _portable(exc)
            del raw, pred
            try:
                results.put((slot, key, error, value))
            except Exception:  # noqa: BLE001 - a value that cannot be pickled: reported without it
                results.put((slot, key, error, None))
    finally:
        try:
            shm.close()
        except BufferError:  # a writer kept a view: the mapping goes with the process
            pass


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Start children without re-running the ``__main__`` script (``spawn`` would import it
    again, and a script without an ``if __name__ == "__main__"`` guard would start over).
    Writers need nothing from it: the field writers are importable classes."""
    main = sys.modules.get("__main__")
    path = None
    if main is not None and getattr(main, "__spec__", None) is None:
        path = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


class WriterProcesses:
    """A pool of writer processes and a ring of shared-memory field slots.

    Parameters
    ----------
    processes
        Writer processes (``spawn`` context).
    slots
        Field slots in the ring (at least ``processes``; memory: ``slots`` fields).
    raw, pred
        ``(shape, dtype)`` of the raw field and of the prediction.
    """

    def __init__(self, processes: int, slots: int, raw: tuple[tuple[int, ...], Any],
                 pred: tuple[tuple[int, ...], Any]) -> None:
        from multiprocessing import shared_memory

        if mp.current_process().daemon:
            raise JumpDenoiseError("writer processes cannot start in a daemonic process (use threads)")
        self.processes = max(1, int(processes))
        self.n_slots = max(self.processes, int(slots))
        specs = []
        for shape, dtype in (raw, pred):
            dt = np.dtype(dtype)
            nbytes = int(np.prod(shape)) * dt.itemsize
            specs.append((tuple(int(v) for v in shape), dt.str, -(-nbytes // _ALIGN) * _ALIGN))
        self.slot_spec = (specs[0], specs[1], specs[0][2] + specs[1][2])
        ctx = mp.get_context("spawn")
        self._shm = shared_memory.SharedMemory(create=True, size=max(1, self.n_slots * self.slot_spec[2]))
        self._tasks, self._results, self._stop = ctx.Queue(), ctx.Queue(), ctx.Event()
        self._free = deque(range(self.n_slots))
        self._in_flight: dict[int, Any] = {}
        self._procs: list = []
        self.closed = False
        try:
            with _main_script_hidden():
                for i in range(self.processes):
                    p = ctx.Process(target=_writer_main, name=f"jd-writer-{i}", daemon=True,
                                    args=(self._shm.name, self.slot_spec, self._tasks, self._results, self._stop))
                    p.start()
                    self._procs.append(p)
        except BaseException:
            self.close()
            raise

    def views(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``(raw, pred)`` arrays of ``slot`` (write into them, then :meth:`submit`)."""
        return _views(self._shm.buf, self.slot_spec, slot)

    def fits(self, raw: np.ndarray, pred_shape: tuple[int, ...]) -> bool:
        """Whether a field of this raw array and prediction shape fits the slots."""
        (rs, rd, _), (ps, _, _), _ = self.slot_spec
        return tuple(raw.shape) == rs and raw.dtype.str == rd and tuple(pred_shape) == ps

    @property
    def in_flight(self) -> int:
        """Fields submitted and not yet reported."""
        return len(self._in_flight)

    def acquire(self, on_result: Callable[[Any, BaseException | None, Any], None]) -> int:
        """A free slot, waiting (and reporting finished fields to ``on_result``) if none is."""
        while not self._free:
            self.collect(on_result, block=True)
        return self._free.popleft()

    def submit(self, slot: int, key: Any, write: Callable[[Any, np.ndarray, np.ndarray], Any]) -> None:
        """Have a writer process run ``write(key, raw, pred)`` on the slot's arrays (what it returns,
        if picklable, comes back with its result)."""
        self._in_flight[slot] = key
        self._tasks.put((slot, key, write))

    def collect(self, on_result: Callable[[Any, BaseException | None, Any], None], *, block: bool = False) -> None:
        """Report finished fields (``on_result(key, error or None, what ``write`` returned)``);
        ``block`` waits for one.

        Raises
        ------
        WriterDied
            If a writer process ended while fields were in flight.
        """
        while self._in_flight:
            try:
                slot, key, error, value = self._results.get(timeout=1.0) if block else self._results.get_nowait()
            except queue.Empty:
                if not block:
                    return
                dead = [p for p in self._procs if p.exitcode is not None]
                if dead:
                    keys = list(self._in_flight.values())
                    raise WriterDied(f"writer process {dead[0].name} ended (exit code {dead[0].exitcode}, "
                                     f"killed or out of memory?) with {len(keys)} field(s) in flight: "
                                     f"{keys[:8]}") from None
                continue
            self._in_flight.pop(slot, None)
            self._free.append(slot)
            on_result(key, error, value)
            block = False

    def wait_all(self, on_result: Callable[[Any, BaseException | None, Any], None]) -> None:
        """Wait until every submitted field is reported."""
        while self._in_flight:
            self.collect(on_result, block=True)

    def alive(self) -> bool:
        """Whether every writer process is running."""
        return not self.closed and all(p.is_alive() for p in self._procs)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the writers (they finish the field in hand), end stragglers, free the memory."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        for _ in self._procs:
            try:
                self._tasks.put(None)
            except (OSError, ValueError):
                break
        for p in self._procs:
            p.join(timeout)
            if p.is_alive():
                log.warning("writer process %s did not stop; terminating it", p.name)
                p.terminate()
                p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
        for q in (self._tasks, self._results):
            q.close()
            q.cancel_join_thread()
        try:
            self._shm.close()
        except BufferError:  # a view is still referenced: the mapping goes when it does
            log.debug("shared memory %s still referenced at close", self._shm.name)
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass


class WriterPool:
    """One :class:`WriterProcesses` at a time, reused across calls (a
    :class:`~jumpdenoise.stages.session.PlateSession` holds one, so that the writers of
    one stage run start once: spawning them costs about a second).

    Idle writers cost no CPU; they are replaced when the settings or the field shape change,
    and stopped by :meth:`close` (also on an error or interrupt of the pipeline).
    """

    def __init__(self) -> None:
        self.processes: WriterProcesses | None = None

    def get(self, processes: int, slots: int, raw: np.ndarray, pred_shape: tuple[int, ...]) -> WriterProcesses:
        """Writer processes for fields like ``raw`` (the running ones when they fit)."""
        held = self.processes
        if held is not None and (not held.alive() or held.processes != processes or held.n_slots != slots
                                 or not held.fits(raw, pred_shape) or held.in_flight):
            self.close()
        if self.processes is None:
            self.processes = WriterProcesses(processes, slots, (raw.shape, raw.dtype), (pred_shape, np.float32))
        return self.processes

    def close(self) -> None:
        """Stop the writer processes, if any, and free their shared memory (idempotent)."""
        held, self.processes = self.processes, None
        if held is not None:
            held.close()
