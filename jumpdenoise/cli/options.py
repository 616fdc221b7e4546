"""Options shared by several commands, so that they read the same in every ``--help``.

Conventions of every command's help: typer shows a literal default as ``[default: X]``;
an option whose default is computed or comes from the config states it in its help as
``(default: X)``.
"""

from __future__ import annotations

from typing import Any

import typer

#: What ``--overwrite`` means for every command that has it.
OVERWRITE_MEANING = "Replace an output that jumpdenoise wrote and recognises; nothing else is ever removed."


def overwrite_option(without: str) -> Any:
    """The ``--overwrite`` flag: :data:`OVERWRITE_MEANING`, then what the command does without it."""
    return typer.Option(False, "--overwrite", help=f"{OVERWRITE_MEANING} Without it, {without}.")
