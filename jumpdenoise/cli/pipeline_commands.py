"""CLI commands of the pipeline: ``run``, ``submit``, ``status``, ``cancel``."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from jumpdenoise.cli import app
from jumpdenoise.cli.extras import LIGHT_STAGES, require_train_extra
from jumpdenoise.errors import ConfigError

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
#: What a demo folder holds (``jumpdenoise run`` or ``jumpdenoise demo``); anything else is the user's.
DEMO_ENTRIES = {"source", "raw.zarr", "model", "denoised.zarr", ".pipeline", "pipeline_state.json", "report.md",
                "report.json", "report_figures", "evaluate", "dask_dashboard.txt", ".raw.zarr.preparing",
                ".denoised.zarr.preparing"}
_UNTIL_HELP = "Stop after this stage (convert, stats, train, predict, stats_denoised, report, evaluate)."


def _prepare_demo(workdir: Path) -> dict:
    """Generate the demo plate in ``workdir/source``; returns the config overrides."""
    from jumpdenoise.demo import DEMO_PLATE
    from jumpdenoise.io.synthetic import generate_plate
    workdir = workdir.expanduser().absolute()
    if workdir.exists():
        foreign = sorted(p.name for p in workdir.iterdir() if p.name not in DEMO_ENTRIES)
        if foreign:
            raise ConfigError(f"{workdir} exists and holds {', '.join(foreign[:5])}, which no jumpdenoise demo "
                              "wrote; choose another --workdir")
        # a previous demo (of `run` or `demo`): start afresh
        shutil.rmtree(workdir)
    typer.echo(f"generating the demo plate (Phenix layout, {DEMO_PLATE['rows']} x {DEMO_PLATE['columns']} wells, "
               f"{DEMO_PLATE['fields']} fields, channels {', '.join(DEMO_PLATE['channels'])}) in {workdir / 'source'}")
    source = generate_plate(workdir / "source", **DEMO_PLATE)
    return {"source": {"path": str(source)}, "paths": {"workdir": str(workdir)}}


@app.command()
def run(
    config: Path | None = typer.Argument(None, help="Pipeline YAML configuration; without it, the embedded demo "
                                                    "plate runs end to end."),
    workdir: Path | None = typer.Option(None, "--workdir", "-o", help="Run folder (default: paths.workdir of the "
                                                                       "config; ./jumpdenoise-demo for the demo)."),
    until: str | None = typer.Option(None, "--until", help=_UNTIL_HELP),
    wait: float = typer.Option(0, "--wait", min=0, help="Seconds to wait when another run holds the run folder "
                                                         "(default: refuse at once, naming it)."),
) -> None:
    """Run the whole pipeline on this machine: convert -> stats -> train -> predict -> stats -> report.

    Units run in local processes or on Dask (``executor.kind`` in the config); stages already
    done in the run folder are skipped, so running again resumes.
    """
    if until not in LIGHT_STAGES:
        require_train_extra("run" + (f" --until {until}" if until else ""))
    from jumpdenoise.config import load_config
    from jumpdenoise.io.output_lock import OutputLock
    from jumpdenoise.pipeline import run_pipeline
    from jumpdenoise.run_state import collect_status, format_status

    if config is None:  # the demo folder is locked before an earlier demo in it is removed
        demo_dir = (workdir or Path("jumpdenoise-demo")).expanduser().absolute()
        with OutputLock(demo_dir, wait_s=wait) as lock:
            cfg = load_config(DEMO_CONFIG, overrides=_prepare_demo(demo_dir))
            rf = run_pipeline(cfg, until=until, echo=typer.echo, token=lock.token)
    else:
        overrides = {"paths": {"workdir": str(workdir.absolute())}} if workdir else None
        cfg = load_config(config, overrides=overrides)
        rf = run_pipeline(cfg, until=until, echo=typer.echo, wait_s=wait)
    typer.echo(format_status(collect_status(rf.workdir)))
    for name, path in (("denoised plate", cfg.paths.denoised_plate), ("report", rf.workdir / "report.md")):
        if Path(path).exists():
            typer.echo(f"{name}: {path}")


@app.command()
def submit(
    config: Path = typer.Argument(..., help="Pipeline YAML configuration with executor.profile (a SLURM profile)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print stages, units, resources and dependencies; "
                                                          "submit nothing."),
    until: str | None = typer.Option(None, "--until", help=_UNTIL_HELP),
) -> None:
    """Submit the pipeline to SLURM through submitit, each stage afterok the previous one.

    Submitting again resubmits only what is missing or failed.
    """
    if until not in LIGHT_STAGES:
        require_train_extra("submit" + (f" --until {until}" if until else ""))
    from jumpdenoise.config import load_config
    from jumpdenoise.pipeline_slurm import submit_pipeline

    submit_pipeline(load_config(config), dry_run=dry_run, until=until, echo=typer.echo)


@app.command()
def status(
    workdir: Path = typer.Argument(..., help="Run folder (paths.workdir of the config)."),
    lines: int = typer.Option(8, "--lines", "-n", min=0, help="Error lines shown per failed unit."),
) -> None:
    """Per-stage progress of a run; each failed unit with its log path and the end of its error."""
    from jumpdenoise.run_state import collect_status, format_status

    typer.echo(format_status(collect_status(workdir), error_lines=lines))


@app.command()
def cancel(workdir: Path = typer.Argument(..., help="Run folder (paths.workdir of the config).")) -> None:
    """Cancel the queued and running SLURM jobs of a run (``submit`` again resumes it)."""
    from jumpdenoise.run_state import cancel_run

    ids = cancel_run(workdir)
    typer.echo(f"cancelled {len(ids)} job(s): {' '.join(ids)}" if ids else "no queued or running job")
