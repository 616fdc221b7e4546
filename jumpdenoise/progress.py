"""Progress of long loops, as log records at the :data:`PROGRESS` level.

Progress (units done, training epochs) is a logging concern: the CLI shows it by default and
``-q`` hides it. Library use without any logging set up (a notebook, a script) still shows
it: see :func:`log_progress`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Callable, Iterator

#: Level of progress records: between INFO and WARNING (shown by the CLI unless ``-q``).
PROGRESS = 25
PROGRESS_NAME = "PROGRESS"

_log = logging.getLogger(__name__)


def register_level() -> None:
    """Name :data:`PROGRESS` ``"PROGRESS"`` in log records (idempotent)."""
    if logging.getLevelName(PROGRESS) != PROGRESS_NAME:
        logging.addLevelName(PROGRESS, PROGRESS_NAME)


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers ``logger``'s records reach, less files and null handlers (e.g. train.log)."""
    found: list[logging.Handler] = []
    lg: logging.Logger | None = logger
    while lg is not None:
        found += [h for h in lg.handlers if not isinstance(h, (logging.FileHandler, logging.NullHandler))]
        lg = lg.parent if lg.propagate else None
    return found


def _unconfigured_shows(logger: logging.Logger) -> bool:
    """With no console handler: whether progress goes to stderr (no level above PROGRESS was set).

    The root logger's WARNING while it has no handler is logging's untouched default, not a choice.
    """
    lg: logging.Logger | None = logger
    while lg is not None:
        if lg.level != logging.NOTSET and not (lg is logging.root and not lg.handlers):
            return lg.level <= PROGRESS
        lg = lg.parent
    return True


def progress_visible(logger: logging.Logger = _log) -> bool:
    """Whether a progress record of ``logger`` reaches the person running the code.

    With a console handler configured (the CLI's, ``logging.basicConfig``...): when the logger
    is enabled for :data:`PROGRESS` and a console handler lets it through. Without one (logging
    untouched, or only log files): unless a level above :data:`PROGRESS` was set.
    """
    handlers = _console_handlers(logger)
    if handlers:
        return logger.isEnabledFor(PROGRESS) and any(h.level <= PROGRESS for h in handlers)
    return _unconfigured_shows(logger)


def log_progress(logger: logging.Logger, message: str, *args: object) -> None:
    """Log ``message % args`` at :data:`PROGRESS` on ``logger``.

    When no console handler is configured, logging alone would show nothing (its last-resort
    handler shows WARNING and above only), so the line is also written to stderr, as that
    handler writes warnings; a notebook or script shows progress without setting up logging.
    Setting a level above :data:`PROGRESS` on the ``jumpdenoise`` logger (e.g.
    ``logging.getLogger("jumpdenoise").setLevel(logging.WARNING)``) silences it; configuring a
    console handler (``logging.basicConfig(level=logging.INFO)``) hands it to that handler.
    Log files (e.g. a run's train.log) receive the record either way when their logger is
    enabled for it.
    """
    register_level()
    if logger.isEnabledFor(PROGRESS):
        logger.log(PROGRESS, message, *args)
    if not _console_handlers(logger) and _unconfigured_shows(logger):
        fallback = logging.StreamHandler(sys.stderr)
        fallback.setFormatter(logging.Formatter("%(message)s"))
        fallback.handle(logging.LogRecord(logger.name, PROGRESS, __file__, 0, message, args, None))


@contextlib.contextmanager
def progress_bar(total: int, label: str, logger: logging.Logger = _log) -> Iterator[Callable[[int], None]]:
    """Report the progress of ``total`` steps; yields ``advance(n=1)``.

    A rich bar on stderr when stderr is a terminal and progress is visible
    (:func:`progress_visible`); otherwise a ``"label: done/total"`` record at :data:`PROGRESS`
    every ~10 % and at the end (:func:`log_progress`), which logging may hide (``-q``).
    """
    if sys.stderr.isatty() and progress_visible(logger):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), transient=False, console=Console(stderr=True),
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
            log_progress(logger, "%s: %d/%d", label, state["done"], total)

    yield advance
