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
    epochs: int = typer.Option(100, "--epochs", min=1, help="Training epochs."),
    tta: bool = typer.Option(False, "--tta", help="Average predictions over 8 flips/rotations (8x compute)."),
    seed: int = typer.Option(0, "--seed", help="Noise seed (test noise uses seed+1)."),
    out: Path = typer.Option(Path("bsd-run"), "--out", help="Output folder (model/, bsd_scores.csv, bsd_summary.json)."),
    n_train: int | None = typer.Option(None, "--n-train", min=1, help="Use only the first N training images."),
    n_test: int | None = typer.Option(None, "--n-test", min=1, help="Use only the first N test images."),
    patch_size: int = typer.Option(64, "--patch-size", min=8, help="Training patch size (pixels)."),
    batch_size: int = typer.Option(128, "--batch-size", min=1, help="Training batch size."),
    n2v2: bool = typer.Option(False, "--n2v2", help="Use the N2V2 variant (BlurPool, median masking)."),
) -> None:
    """Train N2V on noisy TRAIN images, denoise noisy TEST images, print per-image and mean PSNR/SSIM.

    Noise: clean + N(0, sigma^2), float, unclipped, fixed seed. PSNR with data range 255.
    Reference on BSD68 at sigma 25: noisy 20.2 dB, N2V paper 27.71 dB, n2v notebook 27.81 dB (27.88 TTA).
    """
    from rich.console import Console
    from rich.table import Table

    from jumpdenoise.bsd import run_bsd

    console = Console()
    console.print(f"BSD protocol: train {train}, test {test}, sigma {sigma:g}, {epochs} epochs, seed {seed}"
                  f"{', TTA' if tta else ''}")
    report = run_bsd(train, test, sigma=sigma, epochs=epochs, seed=seed, tta=tta, out_dir=out, n_train=n_train,
                     n_test=n_test, patch_size=patch_size, batch_size=batch_size, n2v2=n2v2)
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
