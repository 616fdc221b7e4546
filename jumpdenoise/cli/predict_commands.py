"""CLI commands of the predict part (registered on the shared typer app): predict, export-tiff."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from jumpdenoise.cli import app
from jumpdenoise.cli.extras import require_train_extra


def _split(values: Optional[list[str]]) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@app.command()
def predict(
    model: Path = typer.Argument(..., help="Run folder, .ckpt checkpoint or BioImage Model Zoo .zip."),
    plate: Path = typer.Argument(..., help="Raw OME-Zarr plate."),
    out: Path = typer.Argument(..., help="Denoised OME-Zarr plate to write."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (its predict/executor sections)."),
    wells: Optional[list[str]] = typer.Option(None, "--wells", help="Wells to denoise, e.g. A01,B02 (default all)."),
    fields: Optional[list[str]] = typer.Option(None, "--fields", help="Field indices per well, e.g. 0,1."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32", help="bfloat16 autocast (default from config: fp32)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the network."),
    tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Average over the 8 flips/rotations."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
    network_variant: Optional[str] = typer.Option(None, "--network-variant",
                                                   help="auto, grouped, channels_last or split."),
    autotune: Optional[bool] = typer.Option(None, "--autotune/--no-autotune",
                                            help="cuDNN autotuning (faster; not bit-reproducible across jobs)."),
    tile_size: Optional[int] = typer.Option(None, "--tile-size", help="Tile side (default: whole fields)."),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="Tile overlap (default: 2x receptive field)."),
    blending: Optional[str] = typer.Option(None, "--blending", help="crop or blend."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Tiles per forward pass."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 or source (rounded, clipped)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="best, last or a path (run folders)."),
    wells_per_unit: Optional[int] = typer.Option(None, "--wells-per-unit", help="Wells per unit of work."),
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
    from jumpdenoise.stages.predict import predict as run_predict

    overrides: dict = {"model": str(model.resolve()), "overwrite": overwrite or None,
                       "skip_missing": skip_missing or None}
    for key, value in (("bf16", bf16), ("compile", compile), ("tta", tta), ("device", device),
                       ("network_variant", network_variant), ("autotune", autotune),
                       ("tile_size", tile_size), ("overlap", overlap), ("blending", blending),
                       ("batch_size", batch_size), ("dtype", dtype), ("checkpoint", checkpoint),
                       ("wells_per_unit", wells_per_unit), ("wells", _split(wells))):
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
    typer.echo(f"written {out} (comparison: {out / '.jumpdenoise' / 'comparison.csv'})")


@app.command("export-tiff")
def export_tiff(
    denoised: Path = typer.Argument(..., help="Denoised OME-Zarr plate."),
    out_dir: Path = typer.Argument(..., help="Folder for the TIFFs and the load_data CSV."),
    wells: Optional[list[str]] = typer.Option(None, "--wells", help="Wells to export (default all)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow a non-empty OUT_DIR."),
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
