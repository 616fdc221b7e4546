"""Which commands need the ``train`` extra, and the one line that says so when it is missing.

The light core (``pip install jumpdenoise``) converts, inspects, verifies and exports plates;
training, prediction, the BioImage Model Zoo export and the BSD protocol need torch, CAREamics
and Lightning (``pip install 'jumpdenoise[train]'``).
"""

from __future__ import annotations

import importlib.util

from jumpdenoise.errors import JumpDenoiseError

#: Modules of the ``train`` extra, by the distribution that provides them.
TRAIN_MODULES = {"torch": "torch", "careamics": "careamics", "lightning": "lightning",
                 "bioimageio.core": "bioimageio.core"}
INSTALL_HINT = "pip install 'jumpdenoise[train]'"
#: Pipeline stages that run without the ``train`` extra.
LIGHT_STAGES = frozenset({"convert", "stats"})


class MissingExtraError(JumpDenoiseError):
    """A command needs an optional part of jumpdenoise that is not installed."""


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a blocked import
        return False


def missing_train_modules() -> list[str]:
    """The distributions of the ``train`` extra whose modules cannot be imported."""
    return [dist for module, dist in TRAIN_MODULES.items() if not _importable(module)]


def require_train_extra(command: str) -> None:
    """Raise :class:`MissingExtraError` naming the extra when ``command`` cannot run.

    Parameters
    ----------
    command
        The command as a user typed it (``"train"``, ``"run --until predict"``).
    """
    missing = missing_train_modules()
    if missing:
        raise MissingExtraError(f"`jumpdenoise {command}` needs the train extra ({', '.join(missing)} not "
                                f"installed): {INSTALL_HINT}")


def extra_for_import_error(exc: BaseException) -> str | None:
    """The one line for an ``ImportError`` of a ``train`` module met later (``None`` for other errors)."""
    if not isinstance(exc, ImportError):
        return None
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name in {m.split(".")[0] for m in TRAIN_MODULES}:
        return f"{name} is not installed; this needs the train extra: {INSTALL_HINT}"
    return None
