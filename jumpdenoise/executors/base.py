"""The executor abstraction: run a function over units, report each outcome.

Executors know nothing of images: they receive a picklable ``fn(unit) -> dict`` and a list
of :class:`~jumpdenoise.stages.base.Unit`. A failing unit never stops the others; its
error (and log path when there is one) is returned in its :class:`Outcome`.
"""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass
class Outcome:
    """Result of one unit.

    Attributes
    ----------
    key
        The unit's key.
    ok
        Whether the unit completed.
    value
        What ``fn`` returned (``None`` on failure).
    error
        Short error text (last lines of the traceback) on failure.
    log
        Path of the unit's log file, when the executor keeps one.
    extra
        Executor details: ``job_id``, ``state`` (SLURM), ``errno`` (a failure that was an
        ``OSError``, e.g. a full disk).
    """

    key: str
    ok: bool
    value: Any = None
    error: str | None = None
    log: str | None = None
    extra: dict = field(default_factory=dict)


def failed(key: str, exc: BaseException) -> Outcome:
    """The outcome of a unit that raised ``exc`` (its traceback tail, and its errno if any)."""
    errno = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    return Outcome(key, False, error=error_text(exc), extra={"errno": errno} if errno else {})


def error_text(exc: BaseException, limit: int = 12) -> str:
    """Format an exception as its last ``limit`` traceback lines."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines).rstrip().splitlines()
    return "\n".join(text[-limit:])


class Executor(ABC):
    """Runs ``fn`` over units and returns one :class:`Outcome` per unit, in order."""

    name: str = "executor"

    @abstractmethod
    def map(self, fn: Callable[[Any], Any], units: Sequence[Any], *, label: str = "") -> list[Outcome]:
        """Run ``fn(unit)`` for every unit.

        Parameters
        ----------
        fn
            Picklable callable taking one unit.
        units
            Units with a ``key`` attribute.
        label
            Text shown on the progress bar.
        """

    def close(self) -> None:
        """Release resources (clusters, pools)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
