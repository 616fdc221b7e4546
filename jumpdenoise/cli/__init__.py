"""Command-line interface: a thin typer layer over the library.

Each sub-module registers its commands on :data:`app`; none does work at import time.
"""

from __future__ import annotations

import logging
import sys

import typer

from jumpdenoise.errors import JumpDenoiseError
from jumpdenoise.progress import PROGRESS, register_level

app = typer.Typer(
    name="jumpdenoise",
    help="Noise2Void denoising of JUMP Cell Painting plates (TIFF -> OME-Zarr -> N2V -> denoised OME-Zarr).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from jumpdenoise import __version__

        typer.echo(__version__)
        raise typer.Exit()


class _StderrFormatter(logging.Formatter):
    """Progress lines as they are; other records prefixed with their level (``WARNING: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == PROGRESS:
            return record.getMessage()
        return f"{record.levelname}: {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (a caller may replace it between commands)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_StderrFormatter())

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 - the stream logging writes to
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        """Ignored: always the current ``sys.stderr``."""


def configure_logging(verbose: int, quiet: bool) -> None:
    """One stderr handler on the ``jumpdenoise`` logger: progress and warnings by default
    (:data:`jumpdenoise.progress.PROGRESS`), INFO with ``-v``, DEBUG with ``-vv``, errors only
    with ``-q``.

    The level is set on the handler as well as on the logger: a log file that lowers the
    logger's level (a run's train.log) does not bring more lines to stderr.
    """
    register_level()
    level = logging.ERROR if quiet else {0: PROGRESS, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logger = logging.getLogger("jumpdenoise")
    logger.setLevel(level)
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        logger.addHandler(handler)
    handler.setLevel(level)


@app.callback()
def options(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error (otherwise one line)."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True,
                                help="More log lines: -v info, -vv debug (default: progress and warnings)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors in the log (no progress, no warnings)."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    """Noise2Void denoising of JUMP Cell Painting plates (TIFF -> OME-Zarr -> N2V -> denoised OME-Zarr)."""
    configure_logging(verbose, quiet)


from jumpdenoise.cli import plate_commands  # noqa: E402,F401  (convert, verify, demo)
from jumpdenoise.cli import inspect_commands  # noqa: E402,F401  (info, stats)
from jumpdenoise.cli import train_commands  # noqa: E402,F401  (train, export)
from jumpdenoise.cli import predict_commands  # noqa: E402,F401  (predict, export-tiff)
from jumpdenoise.cli import pipeline_commands  # noqa: E402,F401  (run, submit, status, cancel)
from jumpdenoise.cli import bsd_commands  # noqa: E402,F401  (bsd)
from jumpdenoise.cli import evaluate_commands  # noqa: E402,F401  (evaluate)
from jumpdenoise.cli import export_commands  # noqa: E402,F401  (export-zarr)


def user_error(exc: Exception) -> tuple[str, int]:
    """The one line shown for ``exc`` and the exit code (2: an error the user can act on).

    jumpdenoise's own errors keep their message; an ``OSError`` of a read-only, forbidden or
    full output names the path and the cause (free space included); any other ``OSError``
    names its file; anything else is an unexpected error (exit 1) whose traceback
    ``--debug`` shows.
    """
    from jumpdenoise.cli.extras import extra_for_import_error
    from jumpdenoise.io.output_guard import is_write_error, write_error

    if isinstance(exc, JumpDenoiseError):
        return str(exc), 2
    missing_extra = extra_for_import_error(exc)
    if missing_extra is not None:
        return missing_extra, 2
    if is_write_error(exc):
        return str(write_error(exc)), 2  # type: ignore[arg-type]
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}", 2
    return f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1


def main() -> None:
    """Entry point of the ``jumpdenoise`` console script: errors become one clear line.

    ``jumpdenoise --debug COMMAND ...`` lets the traceback through instead.
    """
    debug = "--debug" in sys.argv[1:]
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - every error reaches the user as one line
        if debug:
            raise
        message, code = user_error(exc)
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        sys.exit(code)
