"""Local executor: in-process (one worker) or a process pool, with a progress bar."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

from jumpdenoise.executors.base import Executor, Outcome, error_text
from jumpdenoise.progress import progress_bar


class LocalExecutor(Executor):
    """Run units on this machine.

    Parameters
    ----------
    workers
        Number of processes; 1 runs in this process (easiest to debug).
    """

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))

    def map(self, fn: Callable[[Any], Any], units: Sequence[Any], *, label: str = "") -> list[Outcome]:
        """Run ``fn`` over ``units``; see :meth:`Executor.map`."""
        outcomes: dict[str, Outcome] = {}
        with progress_bar(len(units), label or "units") as advance:
            if self.workers == 1 or len(units) <= 1:
                for unit in units:
                    outcomes[unit.key] = _call(fn, unit)
                    advance()
            else:
                ctx = mp.get_context("spawn")
                with ProcessPoolExecutor(self.workers, mp_context=ctx) as pool:
                    futures = {pool.submit(_call, fn, u): u for u in units}
                    for fut in as_completed(futures):
                        unit = futures[fut]
                        try:
                            outcomes[unit.key] = fut.result()
                        except BaseException as exc:  # worker died (e.g. OOM kill)
                            outcomes[unit.key] = Outcome(unit.key, False, error=error_text(exc))
                        advance()
        return [outcomes[u.key] for u in units]


def _call(fn: Callable[[Any], Any], unit: Any) -> Outcome:
    try:
        return Outcome(unit.key, True, value=fn(unit))
    except Exception as exc:  # reported, never fatal for the other units
        return Outcome(unit.key, False, error=error_text(exc))
