"""CLI command export-zarr: a plate as OME-NGFF 0.4 / zarr v2 (registered on the shared typer app)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from jumpdenoise.cli import app
from jumpdenoise.cli.options import overwrite_option


@app.command("export-zarr")
def export_zarr(
    plate: Path = typer.Argument(..., help="OME-Zarr plate (NGFF 0.5) to copy."),
    out: Path = typer.Argument(..., help="Plate to write."),
    ngff: str = typer.Option("0.4", "--ngff", help="NGFF version of the copy (0.4: zarr v2, for CellProfiler 5, "
                             "ilastik, MoBIE, bioio; jumpdenoise plates are 0.5 already)."),
    overwrite: bool = overwrite_option("an unfinished export of the same plate resumes and any other OUT is "
                                       "refused"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Fields copied at once (default: up to "
                                          "8, by CPU count)."),
) -> None:
    """Copy PLATE as an OME-NGFF 0.4 HCS plate (zarr v2, same chunks and compressor); rerun to resume."""
    from jumpdenoise.errors import ConfigError
    from jumpdenoise.io.ngff_v04 import export_ngff_v04

    if ngff != "0.4":
        raise ConfigError(f"--ngff {ngff}: only 0.4 can be exported (jumpdenoise plates are NGFF 0.5)")
    result = export_ngff_v04(plate, out, overwrite=overwrite, workers=workers)
    typer.echo(f"written {result.path} (NGFF 0.4): {result.n_copied} field(s) copied, {result.n_fields} in all")
