"""What every stage offers: plan units, run one unit.

A stage module (``jumpdenoise.stages.convert``, ``.stats``, ``.train``, ``.predict``)
exposes four functions, and nothing else is needed to run it anywhere:

``prepare(config) -> None``
    Single process, before any unit: writes metadata (plate, wells, field groups).
``plan(config) -> list[Unit]``
    The units still to do (completed units are skipped: rerunning resumes).
``run_one(config, unit) -> dict``
    Does one unit; idempotent (running it twice gives the same bytes); records its
    completion only after its data are written.
``finalize(config, results) -> None``
    Single process, after all units: merges partial results (e.g. statistics).

Optionally, ``run_many(config, units, on_outcome)`` runs several units in one process
in one go (e.g. prediction keeps its read/compute/write pipeline full across unit
boundaries), calling ``on_outcome(unit, result or None, error or None)`` once per unit;
the in-process executor uses it when the stage has it.

Executors (``jumpdenoise.executors``) run ``run_one`` over units and know nothing of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from pydantic import BaseModel, ConfigDict


class Unit(BaseModel):
    """A small, serialisable, idempotent piece of work.

    Attributes
    ----------
    stage
        Name of the stage the unit belongs to.
    key
        Unique, file-name-safe id within the stage (e.g. ``"A01-f0"`` or ``"wells-0003"``).
    items
        What the unit covers (e.g. ``["A01/0", "A01/1"]``: well/field pairs).
    """

    model_config = ConfigDict(frozen=True)

    stage: str
    key: str
    items: list[str]


class StageModule(Protocol):
    """The four functions of a stage module (see module docstring)."""

    def prepare(self, config: Any) -> None: ...  # pragma: no cover - protocol

    def plan(self, config: Any) -> list[Unit]: ...  # pragma: no cover - protocol

    def run_one(self, config: Any, unit: Unit) -> dict: ...  # pragma: no cover - protocol

    def finalize(self, config: Any, results: list[dict]) -> None: ...  # pragma: no cover


@dataclass(frozen=True)
class BoundUnit:
    """A picklable callable running one unit of a stage with a fixed config.

    Executors call ``BoundUnit(stage_module_name, config)(unit)``; the stage module is
    imported in the worker, so nothing but the config and the unit crosses processes.
    """

    module: str
    config: Any

    def __call__(self, unit: Unit) -> dict:
        import importlib

        mod = importlib.import_module(self.module)
        return mod.run_one(self.config, unit)

    def run_many(self, units: list[Unit], on_outcome: Callable[[Unit, Any, BaseException | None], None]) -> bool:
        """Run ``units`` in this process with the stage's ``run_many``, if it has one.

        Returns
        -------
        bool
            ``False`` (nothing run) if the stage has no ``run_many``.
        """
        import importlib

        many = getattr(importlib.import_module(self.module), "run_many", None)
        if many is None:
            return False
        many(self.config, list(units), on_outcome)
        return True


def bind(module: str, config: Any) -> Callable[[Unit], dict]:
    """Return a picklable ``fn(unit)`` for stage module ``module`` and ``config``."""
    return BoundUnit(module, config)
