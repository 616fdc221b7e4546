"""One session per Dask worker process for a stage run: :class:`WorkerSessionPlugin`.

A stage's units share what its session caches (the loaded model, the predictor). In the
driver's process the driver's session serves them; a Dask worker process holds one of its
own for as long as :meth:`~jumpdenoise.executors.dask.DaskExecutor.map` runs, in the worker's
plugin registry, not in a module global.
"""

from __future__ import annotations

from typing import Any, Callable

from distributed.diagnostics.plugin import WorkerPlugin

from jumpdenoise.executors.base import Outcome
from jumpdenoise.executors.local import _call

__all__ = ["WorkerSessionPlugin", "call_in_worker_session"]


class WorkerSessionPlugin(WorkerPlugin):
    """Holds one session (e.g. a :class:`~jumpdenoise.stages.session.PlateSession`) in each
    worker process while it is registered.

    Parameters
    ----------
    make
        Picklable ``make() -> session``; the session has ``close()``.

    Notes
    -----
    Registered by :meth:`~jumpdenoise.executors.dask.DaskExecutor.map` for its duration: :meth:`setup` runs on every worker
    (also one that joins later, e.g. a SLURM job replacing a retired worker) and makes the
    session; :meth:`teardown` (the plugin unregistered, or the worker closing) closes it. The
    worker keeps the plugin in ``worker.plugins[name]``, where the units find it.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.session: Any = None

    def setup(self, worker: Any) -> None:
        """Make this worker's session."""
        self.session = self.make()

    def teardown(self, worker: Any) -> None:
        """Close this worker's session (its caches, the processes it started)."""
        session, self.session = self.session, None
        if session is not None:
            session.close()


def call_in_worker_session(fn: Any, unit: Any, plugin: str) -> Outcome:
    """Run ``fn(unit)`` on a worker in the session of its :class:`WorkerSessionPlugin` ``plugin``
    (a session of the unit's own, as ``fn`` does by itself, when the worker has none)."""
    from distributed import get_worker

    held = getattr(get_worker().plugins.get(plugin), "session", None)
    return _call(fn.in_session(held) if held is not None else fn, unit)
