"""CLI commands of the plate part (registered on the shared typer app)."""

from __future__ import annotations

from jumpdenoise.cli import app  # noqa: F401
