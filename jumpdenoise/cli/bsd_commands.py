"""CLI command of the bsd part: ``jumpdenoise bsd`` (the Noise2Void paper's BSD68 protocol)."""

from __future__ import annotations

from pathlib import Path

import typer

from jumpdenoise.cli import app


@app.command("bsd")
def bsd(
    train: Path = typer.Option(..., "--train", help="Folder of clean 8-bit grayscale training PNGs (e.g. Train400)."),
    test: Path = typer.Option(..., "--test", help="Folder of clean test PNGs (BSD68, or Set12 for a quick check)."),
    sigma: float = typer.Option(25.0, "--sigma", help="Gaussian noise standard deviation on the 0..255 scale."),
    schedule: str = typer.Option("short", "--schedule",
                                 help="Named settings: ci (about a minute on a CPU), short (a CPU run), "
                                      "full (the N2V paper's BSD68 settings, for a GPU)."),
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
    precision: str = typer.Option("32-true", "--precision", help="Training precision: 32-true or bf16-mixed (GPU)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Data-loading worker processes for training."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", min=0.1,
                                             help="Stop training after this many minutes (the best model so far "
                                                  "is used)."),
) -> None:
    """Train N2V on noisy TRAIN images, denoise noisy TEST images, print per-image and mean PSNR/SSIM.

    Noise: clean + N(0, sigma^2), float, unclipped, fixed seed. PSNR with data range 255.
    Reference on BSD68 at sigma 25: noisy 20.2 dB, N2V paper 27.71 dB, n2v notebook 27.81 dB (27.88 TTA).
    """
    from rich.console import Console
    from rich.table import Table

    from jumpdenoise.bsd import run_bsd

    console = Console()
    from jumpdenoise.bsd import schedule as bsd_schedule

    settings = bsd_schedule(schedule, epochs=epochs, patch_size=patch_size, batch_size=batch_size)
    console.print(f"BSD protocol: train {train}, test {test}, sigma {sigma:g}, noise seed {seed}, schedule "
                  f"{schedule}: {settings['train']['epochs']} epochs{', TTA' if tta else ''}")
    report = run_bsd(train, test, sigma=sigma, epochs=epochs, seed=seed, tta=tta, out_dir=out,
                     schedule_name=schedule, n_train=n_train, n_test=n_test, device=device,
                     patch_size=patch_size, batch_size=batch_size, n2v2=n2v2 or None,
                     trainer=bsd_trainer(precision, workers, max_minutes))
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
                  f" over {len(report.scores)} image(s); training {report.train_seconds:.0f} s on {report.n_train}"
                  f" image(s), prediction {report.predict_seconds:.0f} s")
    console.print(f"scores written to {Path(out) / 'bsd_scores.csv'}; model in {report.run_dir}")


def bsd_trainer(precision: str, workers: int, max_minutes: float | None) -> dict | None:
    """Trainer settings of the ``bsd`` command's options (``None`` when all are defaults)."""
    trainer: dict = {}
    if precision != "32-true":
        trainer["precision"] = precision
    if workers:
        trainer["num_workers"] = workers
    if max_minutes is not None:
        trainer["extra"] = {"max_time": {"seconds": round(max_minutes * 60)}}
    return trainer or None
