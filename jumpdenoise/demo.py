"""The end-to-end demo on a generated plate (no download): generate -> convert -> statistics.

Used by ``jumpdenoise demo`` and the README's first command; later stages (train,
predict) extend :func:`run_plate_demo`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from jumpdenoise.io.ngff_markers import STATISTICS_CSV, sidecar_path

#: The embedded default plate: 2 x 3 wells, 2 fields per well, 5 Cell Painting channels.
DEMO_PLATE = dict(plate_name="DEMO-PLATE", rows=2, columns=3, fields=2,
                  channels=("DNA", "ER", "RNA", "AGP", "Mito"), size=(256, 256), seed=0,
                  noise="low-light")


@dataclass
class DemoResult:
    """Where the demo put things."""

    out_dir: Path
    source: Path
    raw_plate: Path
    statistics_csv: Path
    convert_report: object
    statistics: dict


def demo_config(out_dir: Path, source: Path, workers: int = 2):
    """The configuration the demo runs: local executor, outputs inside ``out_dir``."""
    from jumpdenoise.config import load_config

    return load_config(overrides={
        "source": {"path": str(source)},
        "paths": {"workdir": str(out_dir), "raw_plate": str(out_dir / "raw.zarr")},
        "convert": {"overwrite": True},
        "executor": {"kind": "local", "workers": workers},
    })


def run_plate_demo(out_dir: str | Path = "jumpdenoise-demo", *, workers: int = 2,
                   echo: Callable[[str], None] = print) -> DemoResult:
    """Generate a small synthetic plate, convert it, compute its statistics; print the paths.

    Parameters
    ----------
    out_dir
        Folder of the demo; previous demo outputs in it are replaced.
    workers
        Local worker processes.
    echo
        Where progress lines go.
    """
    from jumpdenoise.io.synthetic import generate_plate
    from jumpdenoise.stages.convert import convert
    from jumpdenoise.stages.stats import compute_statistics

    out_dir = Path(out_dir).expanduser().resolve()
    src_dir = out_dir / "source"
    if src_dir.exists():
        shutil.rmtree(src_dir)
    echo(f"1/3 generating a synthetic plate in the Phenix layout: {src_dir}")
    source = generate_plate(src_dir, workers=workers, **DEMO_PLATE)
    cfg = demo_config(out_dir, source, workers)
    echo(f"2/3 converting it to OME-Zarr: {cfg.paths.raw_plate}")
    report = convert(cfg)
    echo(str(report))
    echo("3/3 per-channel statistics (recomputed from the OME-Zarr plate):")
    stats = compute_statistics(cfg.paths.raw_plate)
    echo(format_statistics(stats))
    csv_path = sidecar_path(cfg.paths.raw_plate, STATISTICS_CSV)
    echo("")
    echo(f"source plate (Index.idx.xml + TIFFs): {source}")
    echo(f"OME-Zarr plate:                       {cfg.paths.raw_plate}")
    echo(f"statistics table:                     {csv_path}")
    echo(f"inspect it with:  jumpdenoise info {cfg.paths.raw_plate}")
    return DemoResult(out_dir, source, Path(cfg.paths.raw_plate), csv_path, report, stats)


def format_statistics(stats: dict) -> str:
    """Plate-level statistics as a fixed-width text table, one row per channel."""
    cols = ["count", "min", "max", "mean", "std"] + [f"p{q:g}" for q in stats.get("percentiles", [])]
    width = max(8, *(len(ch) for ch in stats["plate"]))
    lines = [f"{'channel':<{width}} " + " ".join(f"{c:>10}" for c in cols)]
    for ch, s in stats["plate"].items():
        cells = []
        for c in cols:
            v = s.get(c)
            cells.append(f"{'-':>10}" if v is None else f"{v:>10.6g}")
        lines.append(f"{ch:<{width}} " + " ".join(cells))
    return "\n".join(lines)
