"""CLI commands that inspect plates: info, stats (registered on the shared typer app)."""

from __future__ import annotations

from pathlib import Path

import typer

from jumpdenoise.cli import app


def _stats_table(stats: dict, title: str):
    from rich.table import Table

    cols = ["count", "min", "max", "mean", "std"] + [f"p{q:g}" for q in stats.get("percentiles", [])]
    table = Table(title=title)
    table.add_column("channel")
    for c in cols:
        table.add_column(c, justify="right")
    for ch, s in stats["plate"].items():
        table.add_row(ch, *(_fmt(s.get(c)) for c in cols))
    return table


def _console():
    """A rich console; wide enough for the statistics table when output is not a terminal."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def _codec_text(codec) -> str:
    """``blosc zstd clevel 3 bitshuffle`` for a Blosc codec, the class name otherwise."""
    if type(codec).__name__ == "BloscCodec":
        return f"blosc {codec.cname.value} clevel {codec.clevel} {codec.shuffle.value}"
    return type(codec).__name__


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.6g}"
    return f"{int(v)}" if isinstance(v, (int, float)) else str(v)


@app.command()
def info(plate: Path = typer.Argument(..., help="OME-Zarr HCS plate (PLATE.zarr).")) -> None:
    """Describe a plate: wells, fields, channels, shape, dtype, chunking and statistics."""
    from jumpdenoise.io.ngff import field_array, plate_info

    pi = plate_info(plate)
    console = _console()
    first_well = next(iter(pi.wells))
    arr = field_array(pi.path, first_well, pi.wells[first_well][0])
    fields_per_well = sorted({len(f) for f in pi.wells.values()})
    console.print(f"[bold]{pi.name}[/bold]  ({pi.kind})  {pi.path}")
    console.print(f"wells: {len(pi.wells)} ({', '.join(list(pi.wells)[:8])}{' ...' if len(pi.wells) > 8 else ''})"
                  f"   fields: {pi.n_fields} ({'/'.join(map(str, fields_per_well))} per well)")
    console.print(f"channels: {', '.join(pi.channels)}")
    console.print(f"field shape (c, y, x): {tuple(arr.shape)}  dtype: {pi.dtype}  "
                  f"pixel size: {pi.pixel_size_um if pi.pixel_size_um is not None else 'unknown'} um  "
                  f"levels: {pi.n_levels}")
    codecs = [_codec_text(c) for c in (arr.compressors or ())]
    console.print(f"chunks: {tuple(arr.chunks)}  shards: {tuple(arr.shards) if arr.shards else 'none'}  "
                  f"codecs: {', '.join(codecs) or 'none'}")
    if pi.statistics:
        console.print(_stats_table(pi.statistics, "plate statistics"))
    else:
        console.print(f"no statistics stored; run: jumpdenoise stats {plate}")


@app.command()
def stats(
    plate: Path = typer.Argument(..., help="OME-Zarr HCS plate, raw or denoised."),
    csv: Path | None = typer.Option(None, "--csv", help="Also write the statistics table to this CSV."),
    workers: int = typer.Option(1, "--workers", min=1, help="Local processes reading wells."),
) -> None:
    """Recompute per-channel statistics of a plate and store them (attrs, CSV, display windows)."""
    from jumpdenoise.executors.local import LocalExecutor
    from jumpdenoise.io.ngff import write_statistics_csv
    from jumpdenoise.stages.stats import compute_statistics

    result = compute_statistics(plate, executor=LocalExecutor(workers))
    if csv is not None:
        write_statistics_csv(result, csv)
    _console().print(_stats_table(result, f"statistics of {plate}"))
