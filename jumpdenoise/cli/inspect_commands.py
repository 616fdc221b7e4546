"""CLI commands that inspect plates: info, stats (registered on the shared typer app)."""

from __future__ import annotations

from jumpdenoise.cli import app  # noqa: F401
