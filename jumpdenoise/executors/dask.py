"""Dask executor: a LocalCluster, an existing scheduler, or Dask workers as SLURM jobs.

Units are submitted through a bounded window (``workers * dask_window`` futures in
flight), so memory stays flat whatever the number of units; each finished future is
released at once. A failing unit never stops the others: its traceback tail is returned
in its :class:`~jumpdenoise.executors.base.Outcome`, and a worker that dies (e.g. killed
for memory) fails only the units it held, after Dask's own retries.

A function that keeps per-process state across units (a stage's
:class:`~jumpdenoise.stages.base.BoundUnit`, whose session holds the loaded model) offers
``new_worker_session()`` and ``in_session(session)``: for the duration of :meth:`DaskExecutor.map`
every worker process then holds one such session (a
:class:`~jumpdenoise.executors.dask_session.WorkerSessionPlugin`), which all
the units it runs share, instead of one session per unit.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlparse

from jumpdenoise.config.executor import ExecutorConfig
from jumpdenoise.errors import ClusterError
from jumpdenoise.executors.base import Executor, Outcome, error_text
from jumpdenoise.executors.dask_session import WorkerSessionPlugin, call_in_worker_session
from jumpdenoise.executors.local import _call
from jumpdenoise.progress import log_progress, progress_bar

log = logging.getLogger(__name__)

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}

#: glibc malloc settings of LocalCluster workers (set before they start). Dask's default,
#: MALLOC_TRIM_THRESHOLD_=65536, returns every freed buffer to the OS, so each field's
#: multi-MB buffers are page-faulted anew: measured 2900 page faults and 6 ms of system
#: time per 1080 x 1080 plane. Keeping up to 256 MB and serving buffers under 32 MB from
#: the heap cuts that to ~90 faults and ~1 ms; memory stays bounded by the working set.
WORKER_MALLOC_ENV = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 256 * 2**20,
    "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 32 * 2**20,
}

#: Settings of an in-process (threaded) LocalCluster worker: its statistical profiler samples
#: every thread of the process 100 times a second (the dashboard's "Profile" page stays empty).
THREADED_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


class DaskExecutor(Executor):
    """Run units on a Dask cluster.

    Parameters
    ----------
    config
        Executor settings. ``scheduler_address`` connects to a running scheduler;
        ``dask_slurm`` starts ``workers`` SLURM jobs (dask-jobqueue) with the resources of
        ``profile``; otherwise a :class:`distributed.LocalCluster` of ``workers`` processes
        with ``threads_per_worker`` threads is started.
    dashboard_address
        Where a cluster started here serves its dashboard (``":0"`` picks a free port; a port
        in use, e.g. by another run's dashboard, is replaced by a free one, quietly: the link
        printed names the port).
    quiet
        Do not print the dashboard link.
    processes
        For a LocalCluster: workers are processes (default; a unit that crashes or is killed
        takes only its worker down), or, when false, one worker of ``workers *
        threads_per_worker`` threads inside this process. Threads suit units whose heavy work
        releases the GIL (decoding, compressing, file I/O: the conversion): no worker process
        starts or imports anything (~2 CPU-seconds and ~2 s of wall time saved per run), no
        result crosses a process boundary and memory is shared; but a unit that crashes the
        interpreter stops the whole run.

    Notes
    -----
    The cluster is started on the first :meth:`start` or :meth:`map` (the driver calls them once
    the stage's inputs are checked and its units planned) and kept until :meth:`close`, so
    several stages can share it.
    """

    name = "dask"

    def __init__(
        self,
        config: ExecutorConfig | None = None,
        *,
        dashboard_address: str = ":8787",
        quiet: bool = False,
        processes: bool = True,
    ) -> None:
        self.config = config or ExecutorConfig(kind="dask")
        self.dashboard_address = dashboard_address
        self.quiet = quiet
        self.processes = processes
        self.client: Any = None
        self.cluster: Any = None
        self._worker_setup: Callable[[], Any] | None = None

    # -- cluster ----------------------------------------------------------------------
    def start(self) -> Any:
        """Start (or connect to) the cluster and return the :class:`distributed.Client`."""
        if self.client is not None:
            return self.client
        from distributed import Client

        cfg = self.config
        try:
            if cfg.scheduler_address:
                self.client = Client(cfg.scheduler_address, timeout="30s")
            elif cfg.dask_slurm:
                self.cluster = _slurm_cluster(cfg, free_dashboard_address(self.dashboard_address))
                self.client = Client(self.cluster)
            else:
                import dask
                from distributed import LocalCluster

                if self.processes:
                    settings, workers = WORKER_MALLOC_ENV, {"n_workers": cfg.workers,
                                                            "threads_per_worker": cfg.threads_per_worker}
                else:
                    settings, workers = THREADED_WORKER_CONFIG, {
                        "n_workers": 1, "threads_per_worker": cfg.workers * cfg.threads_per_worker}
                with dask.config.set(settings):
                    self.cluster = LocalCluster(**workers, processes=self.processes,
                                                dashboard_address=free_dashboard_address(self.dashboard_address),
                                                silence_logs=logging.ERROR)
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as exc:
            where = cfg.scheduler_address or ("SLURM jobs" if cfg.dask_slurm else "a LocalCluster")
            raise ClusterError(f"cannot start or reach the Dask cluster ({where}): {exc}") from exc
        if not self.quiet:
            self._print_dashboard()
        if self._worker_setup is not None and not self.config.dask_slurm:
            self.client.run(self._worker_setup)
        return self.client

    def warm_up(self, fn: Callable[[], Any] | None = None) -> None:
        """Have ``fn()`` run once on every worker (e.g. imports) as soon as the cluster starts, so
        that the first units do not pay for it; callable from a background thread.

        The cluster itself is not started here: a stage whose inputs turn out to be missing
        must not start one (and print its dashboard) before failing. A cluster already
        running gets ``fn`` at once. SLURM workers arrive when their jobs start: nothing is
        done for them.
        """
        self._worker_setup = fn
        if fn is not None and self.client is not None and not self.config.dask_slurm:
            self.client.run(fn)

    def _print_dashboard(self) -> None:
        link = self.client.dashboard_link
        log_progress(log, "Dask dashboard: %s", link)
        line = tunnel_line(link, self.config)
        if line is not None:
            log_progress(log, "  %s", line)

    def n_workers(self) -> int:
        """Number of workers connected now (at least 1, for sizing the window)."""
        try:
            return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))
        except Exception:  # noqa: BLE001 - informational only
            return max(1, self.config.workers)

    # -- map --------------------------------------------------------------------------
    def map(self, fn: Callable[[Any], Any], units: Sequence[Any], *, label: str = "") -> list[Outcome]:
        """Run ``fn`` over ``units`` with a bounded window of futures; see :meth:`Executor.map`."""
        if not units:
            return []
        client = self.start()
        window = max(self.n_workers(), self.config.workers) * self.config.dask_window
        tag = f"{label or 'unit'}-{uuid.uuid4().hex[:8]}"
        with self._worker_sessions(fn, f"jumpdenoise-session-{tag}") as plugin:
            return self._map(client, fn, units, label, window, tag, plugin)

    def _in_this_process(self) -> bool:
        """Whether the workers are threads of this process (a LocalCluster started with ``processes=False``)."""
        return not (self.processes or self.config.scheduler_address or self.config.dask_slurm)

    @contextmanager
    def _worker_sessions(self, fn: Callable[[Any], Any], name: str) -> Iterator[str | None]:
        """One session per worker process while the block runs (see the module's notes); yields
        the plugin's name, or ``None`` when ``fn`` keeps no session or the workers are threads of
        this process (``fn`` then uses its own, the driver's, session)."""
        make = getattr(fn, "new_worker_session", None)
        if make is None or self._in_this_process():
            yield None
            return
        self.client.register_plugin(WorkerSessionPlugin(make), name=name)
        try:
            yield name
        finally:
            try:
                self.client.unregister_worker_plugin(name)  # its teardown closes each worker's session
            except Exception as exc:  # noqa: BLE001 - workers gone: their sessions went with them
                log.debug("unregistering %s: %s", name, exc)

    def _map(self, client: Any, fn: Callable[[Any], Any], units: Sequence[Any], label: str, window: int,
             tag: str, plugin: str | None) -> list[Outcome]:
        from distributed import KilledWorker, as_completed

        todo = iter(units)
        in_flight: dict[Any, Any] = {}
        queue = as_completed()
        outcomes: dict[str, Outcome] = {}

        suspects: list[Any] = []  # units whose worker died under them, retried one at a time at the end

        def start(unit: Any, suffix: str = "") -> Any:
            if plugin is None:
                return client.submit(_call, fn, unit, pure=False, key=f"{tag}-{unit.key}{suffix}")
            return client.submit(call_in_worker_session, fn, unit, plugin, pure=False, key=f"{tag}-{unit.key}{suffix}")

        def submit(unit: Any) -> None:
            fut = start(unit)
            in_flight[fut] = unit
            queue.add(fut)

        def settle(unit: Any, fut: Any) -> None:
            try:
                outcomes[unit.key] = fut.result()
            except BaseException as exc:  # noqa: BLE001 - worker died (KilledWorker), cancelled...
                if isinstance(exc, KeyboardInterrupt):
                    raise
                outcomes[unit.key] = Outcome(unit.key, False, error=error_text(exc))
            fut.release()

        def submit_next() -> None:
            unit = next(todo, None)
            if unit is not None:
                submit(unit)

        for _ in range(window):
            submit_next()
        with progress_bar(len(units), label or "units") as advance:
            for fut in queue:
                unit = in_flight.pop(fut)
                if fut.status == "error" and isinstance(fut.exception(), KilledWorker):
                    # the worker died under this unit, maybe killed by another one it held: retried later
                    suspects.append(unit)
                    fut.release()
                else:
                    settle(unit, fut)
                    advance()
                submit_next()
            # units are idempotent: each suspect runs again with nothing else in flight, so a unit that
            # kills its worker dies alone (and is reported) and the others it took along succeed
            for unit in suspects:
                settle(unit, start(unit, "-retry"))  # result() waits for it
                advance()
        return [outcomes[u.key] for u in units]

    def close(self) -> None:
        """Close the client and any cluster started here (an external scheduler is left running)."""
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None
        if self.cluster is not None:
            try:
                self.cluster.close()
            finally:
                self.cluster = None


def on_compute_node() -> bool:
    """Whether this process runs on a cluster's compute node: inside a SLURM job, or on another
    host than the one its job was submitted from."""
    submit_host = os.environ.get("SLURM_SUBMIT_HOST")
    return bool(os.environ.get("SLURM_JOB_ID")) or (
        submit_host is not None and submit_host.split(".")[0] != socket.gethostname().split(".")[0])


def tunnel_line(link: str, config: ExecutorConfig) -> str | None:
    """The ``ssh -L`` line that brings a dashboard on a cluster node to the user's laptop, or
    ``None`` when the dashboard is on this (the user's) machine.

    The dashboard is remote for workers started as SLURM jobs, for a scheduler on another
    host, and for a LocalCluster started on a compute node (this process runs in a SLURM
    job); its host is then the node (the dashboard listens on every interface).

    Examples
    --------
    >>> from jumpdenoise.config.executor import ExecutorConfig
    >>> tunnel_line("http://10.1.2.3:8787/status", ExecutorConfig(kind="dask", scheduler_address="tcp://10.1.2.3:8786"))
    'from your laptop: ssh -L 8787:10.1.2.3:8787 <login-node>, then open http://localhost:8787/status'
    """
    host = urlparse(link).hostname or ""
    other_host = config.scheduler_address is not None and host not in _LOCAL_HOSTS and host != socket.gethostname()
    if not (config.dask_slurm or other_host or on_compute_node()):
        return None
    if host in _LOCAL_HOSTS:
        host = socket.gethostname()
    port = urlparse(link).port or 8787
    return f"from your laptop: ssh -L {port}:{host}:{port} <login-node>, then open http://localhost:{port}/status"


def free_dashboard_address(address: str) -> str:
    """``address`` when its port can be bound here, else the same host with port 0 (any free port).

    Examples
    --------
    >>> free_dashboard_address(":0")
    ':0'
    """
    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return address
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host or "", int(port)))
        except OSError:
            return f"{host}:0"
    return address


def _slurm_cluster(cfg: ExecutorConfig, dashboard_address: str) -> Any:
    """A dask-jobqueue SLURMCluster: one worker per job, retired before the wall time."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ClusterError("dask_slurm needs dask-jobqueue (pip install dask-jobqueue)") from exc
    from jumpdenoise.config import load_profile

    prof = load_profile(cfg.profile)
    walltime = f"{prof.time_min // 60:02d}:{prof.time_min % 60:02d}:00"
    lifetime_min, stagger_min = worker_lifetime(prof.time_min)
    directives = []
    if prof.qos:
        directives.append(f"--qos={prof.qos}")
    if prof.constraint:
        directives.append(f"--constraint={prof.constraint}")
    directives += [f"--{k.replace('_', '-')}={v}" for k, v in prof.extra.items()]
    cluster = SLURMCluster(
        queue=prof.partition,
        account=prof.account,
        cores=prof.cpus_per_task,
        processes=1,
        memory=f"{prof.mem_gb}GB",
        walltime=walltime,
        job_extra_directives=directives,
        job_script_prologue=list(prof.setup),
        python=sys.executable,
        interface=cfg.dask_interface,
        log_directory=str(cfg.log_dir) if cfg.log_dir else None,
        worker_extra_args=["--lifetime", f"{lifetime_min}m", "--lifetime-stagger", f"{stagger_min}m"],
        scheduler_options={"dashboard_address": dashboard_address},
        silence_logs="error",
    )
    # adapt (not scale): workers retired at the end of their lifetime are replaced by new jobs
    cluster.adapt(minimum_jobs=cfg.workers, maximum_jobs=cfg.workers)
    return cluster


def worker_lifetime(walltime_min: int) -> tuple[int, int]:
    """Minutes a SLURM-job worker lives (and the stagger), so it retires before its wall time.

    Examples
    --------
    >>> worker_lifetime(60)
    (50, 4)
    """
    margin = max(2, walltime_min // 6)
    stagger = max(1, min(5, margin // 2 - 1))
    return max(1, walltime_min - margin), stagger
