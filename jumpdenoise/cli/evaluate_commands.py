"""CLI command ``evaluate``: segmentation and CellProfiler features, raw vs denoised vs truth."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer

from jumpdenoise.cli import app
from jumpdenoise.cli.options import overwrite_option

REPORT_FILES = ("evaluate.json", "evaluate.md", "features.csv", "families.csv", "channels.csv", "profiles.csv",
                "profile_distances.csv", "segmentation.csv", "evaluate_families.png", "evaluate_masks.png")


def _split(values: Optional[list[str]]) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _clear_outputs(out: Path) -> None:
    """Remove what a previous evaluation wrote into ``out`` (and nothing else)."""
    shutil.rmtree(out / "wells", ignore_errors=True)
    for name in REPORT_FILES:
        (out / name).unlink(missing_ok=True)


@app.command()
def evaluate(
    raw: Path = typer.Argument(..., help="Raw OME-Zarr plate."),
    denoised: Path = typer.Argument(..., help="Denoised OME-Zarr plate."),
    out: Path = typer.Argument(..., help="Folder for the report (CSV, JSON, Markdown, figures)."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="Ground-truth folder (<WELL>-<FIELD>.npy, "
                                         "truth.json) of a synthetic plate."),
    wells: Optional[list[str]] = typer.Option(None, "--wells", help="Wells to evaluate, e.g. A01,B02 "
                                              "(default: all)."),
    fields: Optional[list[str]] = typer.Option(None, "--fields", help="Field indices per well, e.g. 0,1 "
                                               "(default: all)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (its evaluate section)."),
    nuclei_channel: Optional[str] = typer.Option(None, "--nuclei-channel", help="Channel of the nuclei "
                                                 "(default: DNA)."),
    cells_channel: Optional[str] = typer.Option(None, "--cells-channel", help="Channel the cells are grown in "
                                                "(default: AGP)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Local processes, one well each."),
    overwrite: bool = overwrite_option("an interrupted evaluation resumes and a finished report in OUT is "
                                       "refused"),
) -> None:
    """Segment nuclei and cells, measure per-object features with cp_measure on raw, denoised (and truth)
    pixels with the same masks, and report how denoising moves features, profiles and segmentation."""
    from jumpdenoise.config import load_config
    from jumpdenoise.errors import ConfigError, OutputExistsError
    from jumpdenoise.executors.local import LocalExecutor
    from jumpdenoise.stages.evaluate import evaluate_plates

    field_list = _split(fields)
    try:
        field_numbers = [int(f) for f in field_list] if field_list is not None else None
    except ValueError:
        raise ConfigError(f"--fields: expected integers, got {fields}") from None
    options = {"wells": _split(wells), "fields": field_numbers, "nuclei_channel": nuclei_channel,
               "cells_channel": cells_channel}
    cfg = load_config(config, {"evaluate": {k: v for k, v in options.items() if v is not None}})
    settings = cfg.evaluate
    if (out / "evaluate.json").exists():
        if not overwrite:
            raise OutputExistsError(str(out / "evaluate.json"))
        _clear_outputs(out)
    elif overwrite:
        _clear_outputs(out)
    summary = evaluate_plates(raw, denoised, out, truth=truth or settings.truth, settings=settings,
                              executor=LocalExecutor(workers))
    reference = summary["reference"]
    for version, head in summary["headline"].items():
        f1 = ", ".join(f"{k} {v:.3f}" for k, v in head["segmentation_f1"].items() if v is not None)
        r = head["median_feature_r"]
        typer.echo(f"{version} vs {reference}: median feature r {r:.3f}" if r is not None else
                   f"{version} vs {reference}: median feature r undefined")
        typer.echo(f"  segmentation F1: {f1 or '-'}")
    for item in summary["not_made"]:
        typer.echo(f"not compared: {item}")
    typer.echo(f"written {out / 'evaluate.md'}")
