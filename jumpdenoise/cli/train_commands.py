"""CLI commands of the train part: train, export (registered on the shared typer app)."""

from __future__ import annotations

from pathlib import Path

import typer

from jumpdenoise.cli import app
from jumpdenoise.cli.extras import require_train_extra


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML configuration (train section; paths.raw_plate / train.plate)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override train.epochs."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run folder (default: paths.run_dir)."),
    plate: Path | None = typer.Option(None, "--plate", help="Plate to train on (default: train.plate or "
                                      "paths.raw_plate)."),
    devices: int | None = typer.Option(None, "--devices", min=1, help="Override train.trainer.devices."),
    accelerator: str | None = typer.Option(None, "--accelerator", help="Override train.trainer.accelerator "
                                           "(cpu, gpu, auto)."),
) -> None:
    """Train a Noise2Void denoiser on an OME-Zarr plate (CAREamics UNet, Lightning, DDP).

    Writes a run folder: config, normalisation, split, checkpoints (top 3 + last), curves, log.
    Rerunning the same command resumes from checkpoints/last.ckpt.
    """
    require_train_extra("train")
    from jumpdenoise.config import load_config
    from jumpdenoise.driver import run_stage
    from jumpdenoise.stages.base import TRAIN
    from jumpdenoise.train.run_folder import is_global_zero

    overrides: dict = {}
    tr: dict = {}
    if epochs is not None:
        tr["epochs"] = epochs
    if plate is not None:
        tr["plate"] = str(plate.expanduser().resolve())
    trainer = {k: v for k, v in (("devices", devices), ("accelerator", accelerator)) if v is not None}
    if trainer:
        tr["trainer"] = trainer
    if tr:
        overrides["train"] = tr
    if run_dir is not None:
        overrides["paths"] = {"run_dir": str(run_dir.expanduser().resolve())}
    cfg = load_config(config, overrides=overrides)
    run_stage(TRAIN, cfg)
    if is_global_zero():
        typer.echo(f"run folder: {cfg.paths.run_dir}")


@app.command()
def export(
    run: Path = typer.Argument(..., help="Training run folder."),
    out: Path | None = typer.Option(None, "--out", help="Output .zip (default: RUN/export/model.zip)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Checkpoint to export (default: best)."),
    name: str | None = typer.Option(None, "--name", help="Model name (default: the run's experiment name, "
                                    "completed to 5 characters)."),
    authors: list[str] | None = typer.Option(None, "--authors", help="Author name, repeatable (default: "
                                             "jumpdenoise developers)."),
    description: str | None = typer.Option(None, "--description", help="Model description (default: the "
                                           "channels and checkpoint)."),
    maintainers: list[str] | None = typer.Option(None, "--maintainer", metavar="GITHUB_USER", help="GitHub user "
                                                 "name of a maintainer, repeatable (default: none). A GitHub user is "
                                                 "what the Model Zoo asks of a published model (it removes "
                                                 "bioimageio's one alert); it is checked online when the zip is "
                                                 "tested."),
) -> None:
    """Export the best model of a run as a BioImage Model Zoo zip (torchscript + CAREamics weights, and ONNX
    with the onnx extra), tested with bioimageio.core."""
    require_train_extra("export")
    from jumpdenoise.train.export import export_run

    path = export_run(run, out, checkpoint=checkpoint, name=name, authors=authors, description=description,
                      maintainers=maintainers)
    typer.echo(f"exported: {path}")
