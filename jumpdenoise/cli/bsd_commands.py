"""CLI command of the bsd part: ``jumpdenoise bsd`` (the Noise2Void paper's BSD68 protocol)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from jumpdenoise.cli import app

if TYPE_CHECKING:
    from rich.console import Console

    from jumpdenoise.bsd_scores import BsdReport


@app.command("bsd")
def bsd(
    train: Path | None = typer.Option(None, "--train",
                                      help="Folder of clean 8-bit grayscale training PNGs (e.g. Train400); "
                                           "required unless --model is given."),
    test: Path = typer.Option(..., "--test", help="Folder of clean test PNGs (BSD68, or Set12 for a quick check)."),
    model: Path | None = typer.Option(None, "--model",
                                      help="Score this trained model (BioImage Model Zoo .zip, run folder or "
                                           "checkpoint) on --test without training."),
    sigma: float = typer.Option(25.0, "--sigma", help="Gaussian noise standard deviation on the 0..255 scale."),
    schedule: str = typer.Option("short", "--schedule",
                                 help="Named settings: ci (about a minute on a CPU), short (a CPU run), "
                                      "full (the N2V paper's BSD68 settings, for a GPU), budget (the most in "
                                      "--max-minutes of wall time; settings per device)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs (default: the schedule's)."),
    tta: bool = typer.Option(False, "--tta", help="Average predictions over 8 flips/rotations (8x compute)."),
    seed: int = typer.Option(0, "--seed", help="Noise seed (test noise uses seed+1)."),
    out: Path = typer.Option(Path("bsd-run"), "--out",
                             help="Output folder (model/, bsd_scores.csv, bsd_summary.json)."),
    n_train: int | None = typer.Option(None, "--n-train", min=1,
                                       help="Use only the first N training images (default: the schedule's)."),
    n_test: int | None = typer.Option(None, "--n-test", min=1,
                                      help="Use only the first N test images (default: the schedule's)."),
    patch_size: int | None = typer.Option(None, "--patch-size", min=8, help="Training patch size (power of 2)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Training batch size."),
    n2v2: bool = typer.Option(False, "--n2v2", help="Use the N2V2 variant (BlurPool, median masking)."),
    device: str = typer.Option("auto", "--device", help="Prediction device: auto, cpu, cuda."),
    precision: str | None = typer.Option(None, "--precision",
                                         help="Training precision: 32-true or bf16-mixed (GPU) (default: the "
                                              "schedule's, budget: bf16-mixed on CUDA; else 32-true)."),
    workers: int | None = typer.Option(None, "--workers", min=0,
                                       help="Data-loading worker processes for training (default: the schedule's, "
                                            "else 0)."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", min=0.05,
                                             help="Stop training after this many minutes (the best model so far "
                                                  "is used); the budget schedule's deadline."),
    export: Path | None = typer.Option(None, "--export",
                                       help="Also export the trained model to this BioImage Model Zoo .zip."),
) -> None:
    """Train N2V on noisy TRAIN images, denoise noisy TEST images, print per-image and mean PSNR/SSIM.

    With --model, score that model on noisy TEST images instead (no training).
    Noise: clean + N(0, sigma^2), float, unclipped, fixed seed. PSNR with data range 255.
    Reference on BSD68 at sigma 25: noisy 20.2 dB, N2V paper 27.71 dB, n2v notebook 27.81 dB (27.88 TTA).
    """
    from rich.console import Console

    from jumpdenoise.cli.extras import require_train_extra

    require_train_extra("bsd")
    from jumpdenoise.bsd import run_bsd, score_model
    from jumpdenoise.errors import JumpDenoiseError

    console = Console()
    if model is not None:
        console.print(f"BSD protocol: scoring {model} on {test}, sigma {sigma:g}, noise seed {seed + 1}"
                      f"{', TTA' if tta else ''}")
        report = score_model(model, test, sigma=sigma, seed=seed, tta=tta, out_dir=out, n_test=n_test,
                             device=device)
        print_report(console, report, sigma, out)
        return
    if train is None:
        raise JumpDenoiseError("bsd: give --train (a folder of training PNGs) or --model (a model to score)")
    from jumpdenoise.bsd import bsd_training_schedule

    settings = bsd_training_schedule(schedule, device=device, epochs=epochs, patch_size=patch_size,
                                     batch_size=batch_size)
    length = (f"{max_minutes:g} min" if schedule == "budget" and max_minutes is not None
              else f"{settings['train']['epochs']} epochs")
    console.print(f"BSD protocol: train {train}, test {test}, sigma {sigma:g}, noise seed {seed}, schedule "
                  f"{schedule}: {length}{', TTA' if tta else ''}")
    report = run_bsd(train, test, sigma=sigma, epochs=epochs, seed=seed, tta=tta, out_dir=out,
                     schedule_name=schedule, n_train=n_train, n_test=n_test, device=device, max_minutes=max_minutes,
                     patch_size=patch_size, batch_size=batch_size, n2v2=n2v2 or None,
                     trainer=bsd_trainer(precision, workers))
    print_report(console, report, sigma, out)
    console.print(f"training {report.train_seconds:.0f} s on {report.n_train} image(s), {report.epochs} epoch(s); "
                  f"model in {report.run_dir}")
    if export is not None:
        from jumpdenoise.train.export import export_run

        zip_path = export_run(report.run_dir, export, name=f"jumpdenoise N2V BSD sigma {sigma:g} {schedule}",
                              description=(f"Noise2Void denoiser of 8-bit grayscale photographs with Gaussian noise "
                                           f"(sigma {sigma:g} on 0..255), trained by jumpdenoise bsd, schedule "
                                           f"{schedule}, on noisy images of {train.name} only."))
        console.print(f"exported: {zip_path}")


def print_report(console: "Console", report: "BsdReport", sigma: float, out: Path) -> None:
    """Print a :class:`~jumpdenoise.bsd_scores.BsdReport` as a table of PSNR/SSIM per image and mean."""
    from rich.table import Table

    table = Table(title=f"PSNR (dB, data range 255) and SSIM, sigma {sigma:g}")
    for col in ("image", "noisy PSNR", "denoised PSNR", "gain", "noisy SSIM", "denoised SSIM"):
        table.add_column(col, justify="left" if col == "image" else "right")
    rows = report.table()
    for i, row in enumerate(rows):
        if i == len(rows) - 1:
            table.add_section()
        table.add_row(row["image"], f"{row['noisy_psnr']:.2f}", f"{row['denoised_psnr']:.2f}",
                      f"{row['psnr_gain']:+.2f}", f"{row['noisy_ssim']:.3f}", f"{row['denoised_ssim']:.3f}",
                      style="bold" if row["image"] == "mean" else None)
    console.print(table)
    console.print(f"mean PSNR: noisy {report.mean_noisy_psnr:.2f} dB -> denoised {report.mean_denoised_psnr:.2f} dB"
                  f" over {len(report.scores)} image(s){' with TTA' if report.tta else ''}; prediction "
                  f"{report.predict_seconds:.0f} s")
    console.print(f"scores written to {Path(out) / 'bsd_scores.csv'}")


def bsd_trainer(precision: str | None, workers: int | None) -> dict | None:
    """Trainer settings given on the ``bsd`` command line (``None`` when none is; the schedule's apply)."""
    trainer: dict = {}
    if precision is not None:
        trainer["precision"] = precision
    if workers is not None:
        trainer["num_workers"] = workers
    return trainer or None
