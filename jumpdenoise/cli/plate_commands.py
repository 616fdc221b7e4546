"""CLI commands of the plate part: convert, verify, demo (registered on the shared typer app)."""

from __future__ import annotations

from pathlib import Path

import typer

from jumpdenoise.cli import app
from jumpdenoise.cli.options import overwrite_option

_EXECUTORS = ("local", "dask", "slurm")


def _with_executor(cfg, *, executor: str | None, workers: int | None, scheduler: str | None):
    """Return ``cfg`` with the executor chosen on the command line.

    Default for conversion: a Dask LocalCluster, unless the config file names
    ``executor.kind``; ``--scheduler`` implies Dask.
    """
    from jumpdenoise.errors import ConfigError

    ex = cfg.executor
    if executor is not None and executor not in _EXECUTORS:
        raise ConfigError(f"--executor: unknown executor {executor!r} (choose from {', '.join(_EXECUTORS)})")
    if executor is None:
        executor = "dask" if scheduler else (ex.kind if "kind" in ex.model_fields_set else "dask")
    update: dict = {"kind": executor}
    if workers is not None:
        update["workers"] = workers
    if scheduler is not None:
        update["scheduler_address"] = scheduler
    return cfg.model_copy(update={"executor": ex.model_copy(update=update)})


@app.command()
def convert(
    source: Path = typer.Argument(..., help="Phenix export folder or Index XML, load_data CSV, or hyperstack folder."),
    out: Path = typer.Argument(..., help="Output OME-Zarr plate, e.g. PLATE.zarr."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML configuration (source, convert, executor)."),
    overwrite: bool = overwrite_option("a plate prepared from the same source resumes and any other output "
                                       "is refused"),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1,
                                       help="Parallel workers (default: 2): threads of the local Dask cluster, "
                                            "processes with --executor local."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler, "
                                         "e.g. tcp://node12:8786."),
    executor: str | None = typer.Option(None, "--executor", help="local, dask or slurm (default: a Dask "
                                        "LocalCluster, or the config's executor.kind)."),
    fields_per_unit: int | None = typer.Option(None, "--fields-per-unit", min=1, help="Fields per parallel task "
                                               "(default: convert.fields_per_unit of the config)."),
    wait: float = typer.Option(0, "--wait", min=0, help="Seconds to wait when another run holds the output "
                                                         "(default: refuse at once, naming it)."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Convert what exists when some listed or "
                                       "matched source images would not become a field (default: refuse, "
                                       "listing them)."),
) -> None:
    """Convert a JUMP plate (TIFFs) to an OME-Zarr HCS plate with per-channel statistics.

    Rerunning the same command resumes an interrupted conversion. Fields that cannot be
    read are listed and the command exits non-zero; the other fields are converted.
    """
    from jumpdenoise.config import load_config
    from jumpdenoise.stages.convert import convert as run_convert

    overrides: dict = {"source": {"path": str(source.expanduser().resolve())},
                       "paths": {"raw_plate": str(out.expanduser().resolve())}}
    if overwrite:
        overrides["convert"] = {"overwrite": True}
    if fields_per_unit is not None:
        overrides.setdefault("convert", {})["fields_per_unit"] = fields_per_unit
    if allow_missing:
        overrides.setdefault("convert", {})["allow_missing"] = True
    cfg = load_config(config, overrides=overrides)
    cfg = _with_executor(cfg, executor=executor, workers=workers, scheduler=scheduler)
    run_convert(cfg, echo=typer.echo, wait_s=wait)


@app.command()
def verify(
    source: Path = typer.Argument(..., help="The source plate the OME-Zarr plate was converted from."),
    plate: Path = typer.Argument(..., help="The OME-Zarr plate."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML configuration (its source section)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Local processes comparing fields."),
) -> None:
    """Compare every plane of SOURCE with PLATE, pixel for pixel; exit 1 listing any difference."""
    from jumpdenoise.config import load_config
    from jumpdenoise.executors.local import LocalExecutor
    from jumpdenoise.stages.verify import verify_plate

    cfg = load_config(config, overrides={"source": {"path": str(source.expanduser().resolve())}})
    report = verify_plate(cfg.source, plate, executor=LocalExecutor(workers))
    typer.echo(str(report))
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    out_dir: Path = typer.Argument(Path("jumpdenoise-demo"), help="Folder for the demo's source plate and outputs."),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Local worker processes."),
) -> None:
    """Run the demo end to end on a small generated plate: generate -> convert -> statistics.

    Needs no download: the plate (Phenix layout, 16-bit LZW TIFFs) is generated. Rerunning
    replaces the previous demo outputs in OUT_DIR.
    """
    from jumpdenoise.demo import run_plate_demo

    run_plate_demo(out_dir, workers=workers, echo=typer.echo)
