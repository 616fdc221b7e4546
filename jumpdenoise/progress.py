"""Progress bars shared by executors and long loops (rich, silent when not a terminal)."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """Show a progress bar of ``total`` steps; yields ``advance(n=1)``.

    When stderr is not a terminal (CI, SLURM logs) a line is printed every ~10 %.
    """
    if sys.stderr.isatty():
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
        )
        with progress:
            task = progress.add_task(label, total=total)
            yield lambda n=1: progress.advance(task, n)
        return
    state = {"done": 0, "shown": -1}
    step = max(1, total // 10)

    def advance(n: int = 1) -> None:
        state["done"] += n
        if state["done"] // step != state["shown"] or state["done"] == total:
            state["shown"] = state["done"] // step
            print(f"{label}: {state['done']}/{total}", file=sys.stderr, flush=True)

    yield advance
