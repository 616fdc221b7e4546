"""CLI commands of the predict part (registered on the shared typer app): predict, export-tiff."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from jumpdenoise.cli import app
from jumpdenoise.cli.extras import require_train_extra
from jumpdenoise.cli.options import overwrite_option


def _split(values: Optional[list[str]]) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _default(key: str, value: str) -> str:
    """``(default: predict.KEY of --config, else VALUE)`` for an option that overrides the config."""
    return f"(default: predict.{key} of --config, else {value})"


@app.command()
def predict(
    model: Path = typer.Argument(..., help="Run folder, .ckpt checkpoint or BioImage Model Zoo .zip."),
    plate: Path = typer.Argument(..., help="Raw OME-Zarr plate."),
    out: Path = typer.Argument(..., help="Denoised OME-Zarr plate to write."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (its predict/executor sections)."),
    wells: Optional[list[str]] = typer.Option(None, "--wells", help="Wells to denoise, e.g. A01,B02 "
                                              f"{_default('wells', 'all')}."),
    fields: Optional[list[str]] = typer.Option(None, "--fields", help="Field indices per well, e.g. 0,1 "
                                               f"{_default('fields', 'all')}."),
    overwrite: bool = overwrite_option("an output prepared by the same model and settings resumes and any "
                                       "other output is refused"),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32", help=f"bfloat16 autocast {_default('bf16', 'fp32')}."),
    tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Average over the 8 flips/rotations "
                                       f"{_default('tta', 'off')}."),
    device: Optional[str] = typer.Option(None, "--device",
                                         help=f"auto, cpu, cuda, cuda:N {_default('device', 'auto')}."),
    tile_size: Optional[int] = typer.Option(None, "--tile-size",
                                            help=f"Tile side {_default('tile_size', 'whole fields')}."),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="Tile overlap "
                                         f"{_default('overlap', 'twice the receptive-field radius')}."),
    blending: Optional[str] = typer.Option(None, "--blending", help=f"crop or blend {_default('blending', 'crop')}."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Tiles per forward pass "
                                            f"{_default('batch_size', '8')}."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, or source: rounded and clipped "
                                       f"{_default('dtype', 'float32')}."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="best, last or a path, for run folders "
                                            f"{_default('checkpoint', 'best')}."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Leave out the fields the raw plate does not "
                                      "mark complete (default: refuse to run while any is selected)."),
    wait: float = typer.Option(0, "--wait", min=0, help="Seconds to wait when another run holds the output "
                                                         "(default: refuse at once, naming it)."),
) -> None:
    """Denoise every field (or a selection) of PLATE with MODEL into the OME-Zarr plate OUT.

    An interrupted run resumes when rerun with the same arguments.
    """
    require_train_extra("predict")
    from jumpdenoise.config import load_config
    from jumpdenoise.io.ngff_markers import COMPARISON_CSV, sidecar_path
    from jumpdenoise.stages.predict import predict as run_predict

    overrides: dict = {"model": str(model.resolve()), "overwrite": overwrite or None,
                       "skip_missing": skip_missing or None}
    for key, value in (("bf16", bf16), ("tta", tta), ("device", device),
                       ("tile_size", tile_size), ("overlap", overlap), ("blending", blending),
                       ("batch_size", batch_size), ("dtype", dtype), ("checkpoint", checkpoint),
                       ("wells", _split(wells))):
        if value is not None:
            overrides[key] = value
    field_list = _split(fields)
    if field_list is not None:
        try:
            overrides["fields"] = [int(f) for f in field_list]
        except ValueError:
            from jumpdenoise.errors import ConfigError

            raise ConfigError(f"--fields: expected integers, got {fields}") from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    cfg = load_config(config, {"paths": {"raw_plate": str(plate.resolve()), "denoised_plate": str(out.resolve())},
                               "predict": overrides})
    run_predict(cfg, echo=typer.echo, wait_s=wait)
    typer.echo(f"written {out} (comparison: {sidecar_path(out, COMPARISON_CSV)})")


@app.command("export-tiff")
def export_tiff(
    denoised: Path = typer.Argument(..., help="Denoised OME-Zarr plate."),
    out_dir: Path = typer.Argument(..., help="Folder for the TIFFs and the load_data CSV."),
    wells: Optional[list[str]] = typer.Option(None, "--wells", help="Wells to export (default: all)."),
    overwrite: bool = overwrite_option("a non-empty OUT_DIR is refused"),
    compression: str = typer.Option("lzw", "--compression", help="TIFF compression: lzw (as Phenix writes), "
                                    "zlib, zstd or none."),
    dtype: str = typer.Option("source", "--dtype", help="source: the source images' dtype (uint16: rounded, "
                              "clipped), read by CellProfiler on the raw images' scale; float32: unrounded, "
                              "with a MaxSampleValue tag giving CellProfiler the same scale."),
    metadata: Optional[list[str]] = typer.Option(None, "--metadata", help="KEY=VALUE added as a Metadata_KEY "
                                                 "column, e.g. Source=source_4 (repeatable)."),
    illum_dir: Optional[Path] = typer.Option(None, "--illum-dir", help="Folder of illumination functions: adds "
                                             "FileName_Illum<Ch>/PathName_Illum<Ch> columns."),
    illum_pattern: str = typer.Option("{plate}_Illum{channel}.npy", "--illum-pattern",
                                      help="Illumination-function file name ({plate}, {channel})."),
) -> None:
    """Write DENOISED as per-channel TIFFs named like the source's, plus a load_data CSV for CellProfiler.

    A load_data source keeps its CSV columns (illumination functions, Metadata_Source, ...).
    """
    from jumpdenoise.errors import ConfigError
    from jumpdenoise.predict.export_csv import ExtraColumns
    from jumpdenoise.predict.export_tiff import export_tiff as run_export

    pairs = [m.split("=", 1) for m in metadata or []]
    bad = [m for m, p in zip(metadata or [], pairs) if len(p) != 2]
    if bad:
        raise ConfigError(f"--metadata {bad}: expected KEY=VALUE")
    extra = ExtraColumns(metadata={k.strip(): v for k, v in pairs}, illum_dir=illum_dir, illum_pattern=illum_pattern)
    result = run_export(denoised, out_dir, wells=_split(wells), overwrite=overwrite,
                        compression=None if compression.lower() == "none" else compression, dtype=dtype, extra=extra)
    clipped = ", ".join(f"{ch} {n}" for ch, n in result.clipped.items())
    typer.echo(f"written {result.n_fields} field(s) as {result.dtype} TIFFs and {result.csv_path} "
               f"(pixels clipped: {clipped})")
