"""Command-line interface: a thin typer layer over the library.

Each sub-module registers its commands on :data:`app`; none does work at import time.
"""

from __future__ import annotations

import sys

import typer

from jumpdenoise.errors import JumpDenoiseError

app = typer.Typer(
    name="jumpdenoise",
    help="Noise2Void denoising of JUMP Cell Painting plates (TIFF -> OME-Zarr -> N2V -> denoised OME-Zarr).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



@app.command()
def version() -> None:
    """Print the jumpdenoise version."""
    from jumpdenoise import __version__

    typer.echo(__version__)


from jumpdenoise.cli import plate_commands  # noqa: E402,F401  (convert, verify, demo)
from jumpdenoise.cli import inspect_commands  # noqa: E402,F401  (info, stats)
from jumpdenoise.cli import train_commands  # noqa: E402,F401  (train, export)
from jumpdenoise.cli import predict_commands  # noqa: E402,F401  (predict, export-tiff)
from jumpdenoise.cli import pipeline_commands  # noqa: E402,F401  (run, submit, status, cancel)
from jumpdenoise.cli import bsd_commands  # noqa: E402,F401  (bsd)
from jumpdenoise.cli import evaluate_commands  # noqa: E402,F401  (evaluate)
from jumpdenoise.cli import export_commands  # noqa: E402,F401  (export-zarr)


def main() -> None:
    """Entry point of the ``jumpdenoise`` console script: known errors become one clear line."""
    try:
        app()
    except JumpDenoiseError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
