"""The prediction pipeline: read -> compute -> write, bounded, with the device kept busy.

:func:`run_fields` (re-exported by :mod:`jumpdenoise.predict.engine`): reader threads load
the next fields and send their raw pixels to the device, where they are normalised
(:meth:`~jumpdenoise.predict.engine.Predictor.upload`); the caller's thread (the driving
thread) only launches the network and queues each result's copy to the host; a hand-over
thread waits for those copies and gives the fields to the write side, which stores them in
threads (``write_processes=0``) or in writer processes fed through shared memory
(:class:`~jumpdenoise.predict.writers.WriterProcesses`), which is what keeps a fast GPU fed:
the per-field CPU work of the write side (compression, statistics, comparison) is mostly
Python-level numpy calls that do not run in parallel threads of one process, and the
hand-over's copies into shared memory (tens of MB per field) do not hold up the launches.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from jumpdenoise.errors import ModelError

if TYPE_CHECKING:
    from jumpdenoise.predict.engine import Predictor
    from jumpdenoise.predict.writers import WriterPool

log = logging.getLogger("jumpdenoise.predict")

__all__ = ["FieldFailure", "ImplausibleOutput", "PipelineReport", "check_plausible", "run_fields"]


class ImplausibleOutput(ModelError):
    """A denoised field far outside what its raw field and the model's normalisation allow."""


def check_plausible(raw: np.ndarray, denoised: np.ndarray, channels: list[str], std: np.ndarray,
                    where: str) -> None:
    """Refuse a denoised field whose values a working denoiser cannot give.

    A denoiser keeps each channel's intensities: its output's mean lies within the raw
    field's 0.1-99.9 % percentile range. The range is widened by its own width, and by
    at least five of the model's normalisation standard deviations, on each side, so that
    only broken outputs (damaged or mismatched weights, wrong normalisation) fail.

    Parameters
    ----------
    raw, denoised
        ``(c, y, x)`` raw field and its denoised values (raw units).
    channels
        Channel names, in ``c`` order.
    std
        The model's per-channel normalisation standard deviations.
    where
        What is checked, named in the error (the field, the model).

    Raises
    ------
    ImplausibleOutput
        Naming the channel: non-finite values, or a mean outside the widened range.
    """
    for c, name in enumerate(channels):
        out = np.asarray(denoised[c], dtype=np.float64)
        finite = np.isfinite(out)
        if not finite.all():
            raise ImplausibleOutput(f"{where}, channel {name!r}: the denoised field has {int(out.size - finite.sum())} "
                                    "non-finite value(s) (NaN/inf): the model's weights or normalisation are broken")
        lo, hi = (float(v) for v in np.percentile(raw[c], [0.1, 99.9]))
        margin = max(hi - lo, 5.0 * float(std[c]))
        mean = float(out.mean())
        if not lo - margin <= mean <= hi + margin:
            raise ImplausibleOutput(
                f"{where}, channel {name!r}: the denoised mean {mean:.6g} lies far outside the raw field's "
                f"range ({lo:.6g}..{hi:.6g}, p0.1..p99.9): the model's weights or normalisation do not fit this plate")


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
    handover_wait_seconds: float = 0.0
    handover_seconds: float = 0.0

    def summary(self) -> str:
        """One line: fields, rate, where the driving thread spent its time, the hand-over thread's work."""
        n = len(self.done)
        rate = n / self.seconds if self.seconds > 0 else 0.0
        return (f"{n} field(s) in {self.seconds:.2f} s ({rate:.1f}/s); driving thread: launching "
                f"{self.compute_seconds:.2f} s, waiting for reads {self.read_wait_seconds:.2f} s, for the "
                f"hand-over {self.handover_wait_seconds:.2f} s; hand-over thread: {self.handover_seconds:.2f} s "
                f"(device copies, copies to the writers, writers' back-pressure)")


class _DeviceToHost:
    """Results to host memory, overlapped with the device's next fields.

    CUDA: each result is copied into one of ``buffers`` pinned buffers (round robin) by an
    asynchronous copy queued right after its compute (same stream), so that the device goes
    on with the next field; whoever takes the result waits for its copy only
    (:meth:`wait`). A buffer is reused ``buffers`` fields later: the caller must have taken
    its previous result by then. Other devices: the result already is host memory.
    """

    def __init__(self, device: Any, buffers: int) -> None:
        self.cuda = getattr(device, "type", "cpu") == "cuda"
        self.reuses = self.cuda  # the host arrays are staging buffers, overwritten later
        self.n = max(2, int(buffers))
        self._buffers: list = []
        self._turn = 0

    def start(self, y: Any) -> tuple[Any, Any]:
        """Queue the copy of ``y``; returns ``(host tensor or array, event or None)``."""
        if not self.cuda:
            return y, None
        import torch

        if not self._buffers or tuple(self._buffers[0].shape) != tuple(y.shape):
            try:
                self._buffers = [torch.empty(tuple(y.shape), dtype=y.dtype, pin_memory=True) for _ in range(self.n)]
            except RuntimeError as exc:  # no pinned memory to be had: plain synchronous copies
                log.warning("no pinned staging buffers (%s): copying results synchronously", exc)
                self.cuda = self.reuses = False
                return y.cpu(), None
        buf = self._buffers[self._turn]
        self._turn = (self._turn + 1) % self.n
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


#: Results queued on the device or waiting for the hand-over thread (also the number of
#: pinned staging buffers on CUDA): enough slack to ride out a slow hand-over.
HANDOVER_DEPTH = 3


def run_fields(predictor: Predictor, keys: Iterable[Any], read: Callable[[Any], np.ndarray],
               write: Callable[[Any, np.ndarray, np.ndarray], None], *, prefetch: int = 2,
               readers: int = 2, writers: int = 2, write_processes: int = 0,
               on_done: Callable[[Any], None] | None = None,
               on_failure: Callable[[FieldFailure], None] | None = None,
               on_written: Callable[[Any, Any], None] | None = None,
               check_first: Callable[[Any, np.ndarray, np.ndarray], None] | None = None,
               writer_pool: WriterPool | None = None) -> PipelineReport:
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
        ``write(key, raw, denoised_float32)``: converts, stores, and records completion;
        what it returns goes to ``on_written``.
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
        ``n + prefetch +`` :data:`HANDOVER_DEPTH` field slots in shared memory, taken from
        ``writer_pool``. Falls back to threads in a daemonic process (which cannot have
        children).
    on_done
        Called with each key once written (in the caller's thread).
    on_failure
        Called with each :class:`FieldFailure` as it happens (in the caller's thread).
    on_written
        Called with each key written and what ``write`` returned for it, if not ``None``
        (in the caller's thread, before ``on_done``).
    check_first
        ``check_first(key, raw, denoised)`` on the first field computed, before it is
        written (e.g. :func:`check_plausible`); what it raises stops the pipeline.
    writer_pool
        Where the writer processes come from (a session's pool keeps them for the next call
        with the same settings and field shape); default: a pool of this call, stopped when
        it returns. Stopped on an error or interrupt either way.

    Returns
    -------
    PipelineReport
        Done keys (in ``keys`` order) and per-field read/write failures. Errors of the
        computation itself (out of memory, a broken model) and a writer process dying
        are raised, and so is what ``check_first`` raises.
    """
    import multiprocessing as mp

    from jumpdenoise.predict.normalization import denormalize

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

    def failed(key: Any, stage: str, error: BaseException) -> None:
        report.failures.append(FieldFailure(key, stage, error))
        if on_failure is not None:
            on_failure(report.failures[-1])

    def finished(key: Any, error: BaseException | None, value: Any = None) -> None:
        if error is not None:
            failed(key, "write", error)
            return
        if value is not None and on_written is not None:
            on_written(key, value)
        report.done.append(key)
        if on_done is not None:
            on_done(key)

    # the hand-over thread reports settled fields here; the caller's thread calls ``finished``
    settled: queue.SimpleQueue = queue.SimpleQueue()

    def flush() -> None:
        while True:
            try:
                key, error, value = settled.get_nowait()
            except queue.Empty:
                return
            finished(key, error, value)

    def note(key: Any, error: BaseException | None, value: Any = None) -> None:
        settled.put((key, error, value))

    pool = None
    ok = False
    own_pool = writer_pool is None and write_processes > 0
    if own_pool:
        from jumpdenoise.predict.writers import WriterPool

        writer_pool = WriterPool()
    with ThreadPoolExecutor(max(1, readers), thread_name_prefix="jd-read") as rpool, \
            ThreadPoolExecutor(max(1, writers if not write_processes else 1), thread_name_prefix="jd-write") as wpool, \
            ThreadPoolExecutor(1, thread_name_prefix="jd-handover") as hpool:
        pending_reads: list[tuple[Any, Future]] = [(k, rpool.submit(load, k)) for k in keys[:prefetch]]
        next_read = len(pending_reads)
        pending_writes: list[tuple[Any, Future]] = []  # thread mode; touched by the hand-over thread only
        handovers: deque[Future] = deque()

        def settle(key: Any, outcome: Callable[[], Any]) -> None:
            """Report ``key`` done, or failed with what ``outcome()`` raises."""
            try:
                value = outcome()
            except Exception as exc:  # noqa: BLE001 - reported per field
                note(key, exc)
            else:
                note(key, None, value)

        def drain(limit: int) -> None:
            while len(pending_writes) > limit:
                key, fut = pending_writes.pop(0)
                settle(key, fut.result)

        def hand_over(key: Any, raw: np.ndarray, host: Any, event: Any, reused: bool) -> None:
            """(Hand-over thread) wait for one result's copy, give the field to the writers."""
            t_hand = time.perf_counter()
            pred = to_host.wait(host, event)
            del host
            try:
                if pool is not None:
                    if pool.fits(raw, tuple(pred.shape)):
                        slot = pool.acquire(note)
                        raw_slot, pred_slot = pool.views(slot)
                        np.copyto(pred_slot, pred)
                        np.copyto(raw_slot, raw)
                        del raw_slot, pred_slot
                        pool.submit(slot, key, write)
                        pool.collect(note)
                        return
                    # a field unlike the others (shape, dtype): written here, synchronously
                    settle(key, lambda: write(key, raw, pred))
                    return
                drain(max(prefetch, writers))
                pending_writes.append((key, wpool.submit(write, key, raw, pred.copy() if reused else pred)))
            finally:
                report.handover_seconds += time.perf_counter() - t_hand

        def make_room(depth: int) -> None:
            """Wait (in the caller's thread) until at most ``depth`` hand-overs are pending."""
            t_wait = time.perf_counter()
            while len(handovers) > depth:
                handovers.popleft().result()  # raises what the hand-over raised (a writer died)
            report.handover_wait_seconds += time.perf_counter() - t_wait
            flush()

        to_host = _DeviceToHost(predictor.device, HANDOVER_DEPTH)
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
                    failed(key, "read", exc)
                    continue
                finally:
                    report.read_wait_seconds += time.perf_counter() - t_read
                if write_processes and pool is None:
                    # start the writers now (a denoised field has the raw field's shape): their
                    # start-up (about a second) overlaps this first compute
                    pool = writer_pool.get(write_processes, write_processes + prefetch + HANDOVER_DEPTH, raw,
                                           tuple(raw.shape))
                # a staging buffer is reused HANDOVER_DEPTH fields later: its hand-over must be done
                make_room(HANDOVER_DEPTH - 1)
                t0 = time.perf_counter()
                y = denormalize(predictor.predict_normalized(x), mean, std)
                del x
                if check_first is not None:  # the first field only: one copy to the host
                    check_first(key, raw, y.detach().float().cpu().numpy() if hasattr(y, "detach") else np.asarray(y))
                    check_first = None
                # queued on the device: this field's compute, then its copy to the host; the
                # hand-over thread waits for the copy while this thread launches the next field
                host, event = to_host.start(y)
                del y
                report.compute_seconds += time.perf_counter() - t0
                handovers.append(hpool.submit(hand_over, key, raw, host, event, to_host.reuses))
                del host, raw
            make_room(0)
            drain(0)
            if pool is not None:
                pool.wait_all(note)
            flush()
            ok = True
        finally:
            if not ok:
                for _, fut in pending_reads:
                    fut.cancel()
                for fut in handovers:
                    fut.cancel()
                # the hand-over in progress uses the pool's shared memory: let it end first
                futures_wait([f for f in handovers if not f.cancelled()], timeout=60)
                if pool is not None:  # an error or an interrupt: stop the writers, free the memory
                    writer_pool.close()
            elif own_pool:
                writer_pool.close()
    order = {k: i for i, k in enumerate(keys)}
    report.done.sort(key=lambda k: order.get(k, len(order)))
    report.seconds = time.perf_counter() - start
    return report
