"""Local executor: in-process (one worker) or a process pool, with a progress bar."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

from jumpdenoise.executors.base import Executor, Outcome, error_text, failed
from jumpdenoise.progress import progress_bar


class LocalExecutor(Executor):
    """Run units on this machine.

    Parameters
    ----------
    workers
        Number of processes; 1 runs in this process (easiest to debug).
    stream
        With one worker, hand all units at once to a stage that can run them in one go
        (``run_many``, e.g. prediction keeps its pipeline full across units); ``False``
        runs them one by one.
    """

    name = "local"

    def __init__(self, workers: int = 1, *, stream: bool = True) -> None:
        self.workers = max(1, int(workers))
        self.stream = bool(stream)

    def map(self, fn: Callable[[Any], Any], units: Sequence[Any], *, label: str = "") -> list[Outcome]:
        """Run ``fn`` over ``units``; see :meth:`Executor.map`."""
        outcomes: dict[str, Outcome] = {}
        with progress_bar(len(units), label or "units") as advance:
            if self.workers == 1 or len(units) <= 1:
                if not (self.stream and _run_many(fn, units, outcomes, advance)):
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
        return failed(unit.key, exc)


def _run_many(fn: Callable[[Any], Any], units: Sequence[Any], outcomes: dict[str, Outcome],
              advance: Callable[[], None]) -> bool:
    """Run ``units`` in one go through ``fn.run_many`` when ``fn`` offers it (see
    :class:`~jumpdenoise.stages.base.BoundUnit`); ``False`` if it does not (nothing run).
    An error of ``run_many`` itself fails the units it had not reported."""
    many = getattr(fn, "run_many", None)
    if many is None or len(units) < 2:
        return False

    def on_outcome(unit: Any, value: Any, error: BaseException | None) -> None:
        outcomes[unit.key] = Outcome(unit.key, True, value=value) if error is None else failed(unit.key, error)
        advance()

    try:
        if not many(list(units), on_outcome):
            return False
    except Exception as exc:  # reported on every unit not yet reported
        for unit in units:
            if unit.key not in outcomes:
                outcomes[unit.key] = Outcome(unit.key, False, error=error_text(exc))
                advance()
    return True
