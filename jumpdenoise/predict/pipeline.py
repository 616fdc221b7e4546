"""The prediction pipeline: read -> compute -> write, bounded, with the device kept busy.

:func:`run_fields` (re-exported by :mod:`jumpdenoise.predict.engine`): reader threads load
the next fields and send their raw pixels to the device, where they are normalised
(:meth:`~jumpdenoise.predict.engine.Predictor.upload`); the caller's thread runs the
network; the write side stores the previous fields, in threads (``write_processes=0``) or
in writer processes fed through shared memory
(:class:`~jumpdenoise.predict.writers.WriterProcesses`), which is what keeps a fast GPU fed:
the per-field CPU work of the write side (compression, statistics, comparison) is mostly
Python-level numpy calls that do not run in parallel threads of one process.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

if TYPE_CHECKING:
    from jumpdenoise.predict.engine import Predictor

log = logging.getLogger("jumpdenoise.predict")

__all__ = ["FieldFailure", "PipelineReport", "run_fields"]


@dataclass
class FieldFailure:
    """A field that could not be read or written (the others go on)."""

    key: Any
    stage: str
    error: BaseException


@dataclass
class PipelineReport:
    """Counts and timings of :func:`run_fields`."""

    done: list = field(default_factory=list)
    failures: list[FieldFailure] = field(default_factory=list)
    seconds: float = 0.0
    compute_seconds: float = 0.0
    read_wait_seconds: float = 0.0
    handover_seconds: float = 0.0

    def summary(self) -> str:
        """One line: fields, rate, and where the driving thread spent its time."""
        n = len(self.done)
        rate = n / self.seconds if self.seconds > 0 else 0.0
        return (f"{n} field(s) in {self.seconds:.2f} s ({rate:.1f}/s); driving thread: compute/device "
                f"{self.compute_seconds:.2f} s, waiting for reads {self.read_wait_seconds:.2f} s, handing "
                f"over to writers {self.handover_seconds:.2f} s")


class _DeviceToHost:
    """Results to host memory, overlapped with the device's next field.

    CUDA: each result is copied into one of two pinned buffers by an asynchronous copy queued
    right after its compute (same stream), so that the device goes on with the next field
    while the host hands this one over; :meth:`wait` waits for the copy only. Other devices:
    the result already is host memory.
    """

    def __init__(self, device: Any) -> None:
        self.cuda = getattr(device, "type", "cpu") == "cuda"
        self.reuses = self.cuda  # the host arrays are staging buffers, overwritten two fields later
        self._buffers: list = []
        self._turn = 0

    def start(self, y: Any) -> tuple[Any, Any]:
        """Queue the copy of ``y``; returns ``(host tensor or array, event or None)``."""
        if not self.cuda:
            return y, None
        import torch

        if not self._buffers or tuple(self._buffers[0].shape) != tuple(y.shape):
            try:
                self._buffers = [torch.empty(tuple(y.shape), dtype=y.dtype, pin_memory=True) for _ in range(2)]
            except RuntimeError as exc:  # no pinned memory to be had: plain synchronous copies
                log.warning("no pinned staging buffers (%s): copying results synchronously", exc)
                self.cuda = self.reuses = False
                return y.cpu(), None
        buf = self._buffers[self._turn]
        self._turn ^= 1
        buf.copy_(y, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return buf, event

    @staticmethod
    def wait(host: Any, event: Any) -> np.ndarray:
        """The host array of a started copy, once complete."""
        if event is not None:
            event.synchronize()
        return host.numpy() if hasattr(host, "numpy") else np.asarray(host)


def run_fields(predictor: Predictor, keys: Iterable[Any], read: Callable[[Any], np.ndarray],
               write: Callable[[Any, np.ndarray, np.ndarray], None], *, prefetch: int = 2,
               readers: int = 2, writers: int = 2, write_processes: int = 0,
               on_done: Callable[[Any], None] | None = None) -> PipelineReport:
    """Denoise fields through a bounded read -> compute -> write pipeline.

    Parameters
    ----------
    predictor
        What computes.
    keys
        Field identifiers, processed in order.
    read
        ``read(key) -> (c, y, x)`` raw array (called in reader threads).
    write
        ``write(key, raw, denoised_float32)``: converts, stores, and records completion.
        Called in writer threads, or in writer processes when ``write_processes > 0``
        (then it must be picklable, e.g. :class:`~jumpdenoise.predict.writers.PlateFieldWriter`,
        and must not keep the arrays it is given).
    prefetch
        Fields read ahead of the one being computed.
    readers, writers
        Reader threads; writer threads (thread mode: up to ``max(prefetch, writers)``
        fields wait to be written, so that every writer has work).
    write_processes
        ``0``: write in threads. ``n > 0``: ``n`` writer processes and a ring of
        ``n + prefetch`` field slots in shared memory (the pool is kept for the next call
        with the same settings and field shape, until the process exits or
        :func:`~jumpdenoise.predict.writers.close_writer_pool` is called: spawning writers
        costs about a second). Falls back to
        threads in a daemonic process (which cannot have children).
    on_done
        Called with each key once written (in the caller's thread).

    Returns
    -------
    PipelineReport
        Done keys (in ``keys`` order) and per-field read/write failures. Errors of the
        computation itself (out of memory, a broken model) and a writer process dying
        are raised.
    """
    import multiprocessing as mp

    from jumpdenoise.predict.engine import denormalize

    mean, std = predictor.model.mean, predictor.model.std
    report = PipelineReport()
    start = time.perf_counter()
    keys = list(keys)
    prefetch = max(1, int(prefetch))
    if write_processes and mp.current_process().daemon:
        log.info("daemonic process: writing fields in threads instead of %d processes", write_processes)
        write_processes = 0

    def load(key: Any) -> tuple[np.ndarray, Any]:
        raw = read(key)
        return raw, predictor.upload(raw)

    def finished(key: Any, error: BaseException | None) -> None:
        if error is not None:
            report.failures.append(FieldFailure(key, "write", error))
            return
        report.done.append(key)
        if on_done is not None:
            on_done(key)

    pool = None
    ok = False
    with ThreadPoolExecutor(max(1, readers), thread_name_prefix="jd-read") as rpool, \
            ThreadPoolExecutor(max(1, writers if not write_processes else 1), thread_name_prefix="jd-write") as wpool:
        pending_reads: list[tuple[Any, Future]] = [(k, rpool.submit(load, k)) for k in keys[:prefetch]]
        next_read = len(pending_reads)
        pending_writes: list[tuple[Any, Future]] = []

        def settle(key: Any, outcome: Callable[[], Any]) -> None:
            """Report ``key`` done, or failed with what ``outcome()`` raises."""
            try:
                outcome()
            except Exception as exc:  # noqa: BLE001 - reported per field
                finished(key, exc)
            else:
                finished(key, None)

        def drain(limit: int) -> None:
            while len(pending_writes) > limit:
                key, fut = pending_writes.pop(0)
                settle(key, fut.result)

        def hand_over(key: Any, raw: np.ndarray, pred: np.ndarray, reused: bool) -> None:
            """Give one field (host arrays; ``reused``: ``pred`` is a staging buffer) to the writers."""
            nonlocal pool
            if write_processes:
                from jumpdenoise.predict.writers import writer_pool

                if pool is None:
                    pool = writer_pool(write_processes, write_processes + prefetch, raw, tuple(pred.shape))
                if pool.fits(raw, tuple(pred.shape)):
                    slot = pool.acquire(finished)
                    raw_slot, pred_slot = pool.views(slot)
                    np.copyto(pred_slot, pred)
                    np.copyto(raw_slot, raw)
                    del raw_slot, pred_slot
                    pool.submit(slot, key, write)
                    pool.collect(finished)
                    return
                # a field unlike the others (shape, dtype): written here, synchronously
                settle(key, lambda: write(key, raw, pred))
                return
            drain(max(prefetch, writers))
            pending_writes.append((key, wpool.submit(write, key, raw, pred.copy() if reused else pred)))

        to_host = _DeviceToHost(predictor.device)
        computed = None  # the field whose result is on its way to the host
        try:
            while pending_reads:
                key, fut = pending_reads.pop(0)
                if next_read < len(keys):
                    pending_reads.append((keys[next_read], rpool.submit(load, keys[next_read])))
                    next_read += 1
                t_read = time.perf_counter()
                try:
                    raw, x = fut.result()
                except Exception as exc:  # noqa: BLE001 - reported per field
                    report.failures.append(FieldFailure(key, "read", exc))
                    continue
                finally:
                    report.read_wait_seconds += time.perf_counter() - t_read
                t0 = time.perf_counter()
                y = denormalize(predictor.predict_normalized(x), mean, std)
                del x
                # queued on the device: this field's compute, then its copy to the host; the
                # previous field is handed over while the device works on this one
                current = (key, raw, *to_host.start(y))
                del y
                previous = None
                if computed is not None:
                    k, r, host, event = computed
                    previous = (k, r, to_host.wait(host, event))
                    del host
                # time the caller spent computing or waiting for the device, every field counted
                report.compute_seconds += time.perf_counter() - t0
                if previous is not None:
                    t_hand = time.perf_counter()
                    hand_over(*previous, to_host.reuses)
                    report.handover_seconds += time.perf_counter() - t_hand
                    del previous
                computed = current
            if computed is not None:
                k, r, host, event = computed
                computed = None
                t0 = time.perf_counter()
                pred = to_host.wait(host, event)
                report.compute_seconds += time.perf_counter() - t0
                hand_over(k, r, pred, to_host.reuses)
            drain(0)
            if pool is not None:
                pool.wait_all(finished)
            ok = True
        finally:
            if not ok:
                for _, fut in pending_reads:
                    fut.cancel()
                if pool is not None:  # an error or an interrupt: stop the writers, free the memory
                    from jumpdenoise.predict.writers import close_writer_pool

                    close_writer_pool()
    order = {k: i for i, k in enumerate(keys)}
    report.done.sort(key=lambda k: order.get(k, len(order)))
    report.seconds = time.perf_counter() - start
    return report
