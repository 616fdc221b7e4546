"""Benchmark: jumpdenoise predict vs CAREamist.predict, in megapixel-channels per second.

Both read the same fields from a raw OME-Zarr plate and write denoised fields to an
OME-Zarr plate (I/O included), with the same model, in the same run:

- jumpdenoise: the predict stage (prepare, units, finalize with statistics and the
  raw-vs-denoised comparison) with the given settings (whole fields by default);
- CAREamics: ``CAREamist(checkpoint_path=...).predict`` on the list of fields, tile 256,
  overlap 48, batch 8 (its documented tiled prediction), results written with
  :func:`jumpdenoise.io.ngff.write_field`.

Each side gets one warm-up call on one field first (model load, cuDNN / torch.compile
warm-up), then the timed run. The bf16 effect on the output is reported as the max and
mean absolute difference to fp32 on the same field, also relative to the raw std.

Without ``--model``/``--plate`` it builds the seed model (UNet depth 2, 32 features, 4
independent channels, a few CAREamics training steps) and a plate of 1080 x 1080 fields.

Examples::

    python benchmarks/predict.py                      # CPU, 4 fields
    python benchmarks/predict.py --device cuda --fields 64 --modes fp32,bf16,bf16+compile
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHANNELS = ("DNA", "ER", "RNA", "AGP")


def build(workdir: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    from jumpdenoise.predict.testing import make_plate, make_run

    run = Path(args.model) if args.model else None
    plate = Path(args.plate) if args.plate else None
    if run is None:
        t = time.perf_counter()
        accel = "gpu" if args.device.startswith("cuda") else "cpu"
        run = make_run(workdir / "run", channels=CHANNELS, depth=2, features=32, patch=64, steps=10,
                       accelerator=accel)
        print(f"built the seed model in {time.perf_counter() - t:.1f} s: {run}", flush=True)
    if plate is None:
        t = time.perf_counter()
        per_well = 4
        n_wells = math.ceil(args.fields / per_well)
        wells = [f"{'ABCDEFGHIJKLMNOP'[i // 24]}{i % 24 + 1:02d}" for i in range(n_wells)]
        plate = make_plate(workdir / "raw.zarr", wells=wells, n_fields=per_well, channels=CHANNELS,
                           shape_yx=(args.size, args.size), distinct=min(8, args.fields))
        print(f"built a plate of {n_wells * per_well} fields of {args.size}^2 in {time.perf_counter() - t:.1f} s",
              flush=True)
    return run, plate


def field_list(plate: Path, n: int) -> list[tuple[str, int]]:
    from jumpdenoise.io.ngff import plate_info

    return plate_info(plate).field_keys()[:n]


def mpx(fields: list, plate: Path, n_channels: int) -> float:
    from jumpdenoise.io.ngff import plate_info

    h, w = plate_info(plate).shape_yx
    return len(fields) * n_channels * h * w / 1e6


def run_jumpdenoise(run: Path, plate: Path, out: Path, fields: list, mode: str, args: argparse.Namespace) -> dict:
    from jumpdenoise.stages.predict import predict

    wells = sorted({w for w, _ in fields})
    settings = {"device": args.device, "bf16": "bf16" in mode, "compile": "compile" in mode,
                "tile_size": args.tile_size, "batch_size": args.batch_size, "overwrite": True, "dtype": args.dtype}
    t = time.perf_counter()
    predict(model=run, plate=plate, out=out.with_name(out.name + ".warmup"), wells=wells[:1], fields=[0], **settings)
    warm = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    predict(model=run, plate=plate, out=out, wells=wells, **settings)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    shutil.rmtree(out.with_name(out.name + ".warmup"), ignore_errors=True)
    return {"seconds": seconds, "cpu_seconds": cpu, "warmup_seconds": warm}


def run_careamics(run: Path, plate: Path, out: Path, fields: list, args: argparse.Namespace) -> dict:
    import torch
    from careamics import CAREamist
    from lightning.pytorch import Trainer

    from jumpdenoise.io.ngff import create_plate_like, read_field, write_field

    cuda = args.device.startswith("cuda")
    careamist = CAREamist(checkpoint_path=run / "checkpoints" / "last.ckpt", work_dir=out.parent / "careamist",
                          enable_progress_bar=False)
    careamist.trainer = Trainer(accelerator="gpu" if cuda else "cpu", devices=1, logger=False,
                                enable_progress_bar=False, default_root_dir=out.parent / "careamist",
                                callbacks=[careamist.prediction_writer, *careamist.callbacks])
    channels = list(CHANNELS)

    def once(keys: list) -> None:
        images = [read_field(plate, w, f, channels=channels).astype(np.float32) for w, f in keys]
        preds, _ = careamist.predict(images, tile_size=(256, 256), tile_overlap=(48, 48), axes="CYX",
                                     batch_size=args.careamics_batch, data_type="array")
        for (w, f), p in zip(keys, preds):
            write_field(out, w, f, np.asarray(p, dtype=np.float32).reshape(len(channels), *p.shape[-2:]))

    create_plate_like(plate, out, dtype="float32", wells=sorted({w for w, _ in fields}), channels=channels,
                      overwrite=True)
    t = time.perf_counter()
    once(fields[:1])
    warm = time.perf_counter() - t
    if cuda:
        torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    once(fields)
    if cuda:
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c, "warmup_seconds": warm}


def engine_only(run: Path, plate: Path, fields: list, mode: str, args: argparse.Namespace) -> dict:
    """Mpx-ch/s of the engine alone: fields already in memory, nothing written (H2D/D2H included).

    Separates the device's share from the plate I/O (decompression, statistics, writes).
    """
    import torch

    from jumpdenoise.io.ngff import read_field
    from jumpdenoise.predict.engine import Predictor, run_fields
    from jumpdenoise.predict.model import load_model

    predictor = Predictor(load_model(run, args.device), tile_size=args.tile_size, batch_size=args.batch_size,
                          bf16="bf16" in mode, compile="compile" in mode)
    cache = {k: read_field(plate, *k, channels=list(CHANNELS)) for k in fields[:8]}
    keys = [fields[i % len(cache)] for i in range(len(fields))]
    run_fields(predictor, keys[:1], cache.__getitem__, lambda *a: None)  # warm-up (compile, cuDNN)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    report = run_fields(predictor, keys, cache.__getitem__, lambda *a: None)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    work = mpx(keys, plate, len(CHANNELS))
    return {"seconds": seconds, "mpx_ch_per_s": work / seconds, "compute_seconds": report.compute_seconds}


def bf16_effect(run: Path, plate: Path, field: tuple[str, int], device: str) -> dict:
    from jumpdenoise.io.ngff import read_field
    from jumpdenoise.predict.arrays import denoise_array
    from jumpdenoise.predict.model import load_model

    model = load_model(run, device)
    raw = read_field(plate, *field, channels=list(CHANNELS))
    fp32 = denoise_array(model, raw, tile_size=None)
    bf16 = denoise_array(model, raw, tile_size=None, bf16=True)
    diff = np.abs(bf16.astype(np.float64) - fp32)
    raw_std = float(raw.astype(np.float64).std())
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "raw_std": raw_std,
            "max_abs_diff_over_raw_std": float(diff.max()) / raw_std,
            "mean_abs_diff_over_raw_std": float(diff.mean()) / raw_std,
            "denoised_range": [float(fp32.min()), float(fp32.max())]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="run folder / checkpoint / zip (default: build the seed model)")
    ap.add_argument("--plate", help="raw plate (default: build one)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--fields", type=int, default=None, help="fields to predict (default 4 on CPU, 64 on GPU)")
    ap.add_argument("--size", type=int, default=1080, help="field size of the built plate")
    ap.add_argument("--modes", default=None, help="comma list of fp32, bf16, bf16+compile, fp32+compile")
    ap.add_argument("--bf16", action="store_true", help="add the bf16 mode")
    ap.add_argument("--compile", action="store_true", help="add the compiled mode(s)")
    ap.add_argument("--tile-size", type=int, default=None, help="jumpdenoise tile size (default whole fields)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", default="float32", choices=["float32", "source"])
    ap.add_argument("--careamics-batch", type=int, default=8)
    ap.add_argument("--careamics-fields", type=int, default=None, help="fields for the baseline (default all)")
    ap.add_argument("--skip-careamics", action="store_true")
    ap.add_argument("--engine-only", action="store_true",
                    help="also time the engine alone on fields in memory (no plate I/O)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.fields = args.fields or (64 if cuda else 4)
    modes = args.modes.split(",") if args.modes else ["fp32"] + (["bf16"] if args.bf16 else []) + \
        (["bf16+compile" if args.bf16 else "fp32+compile"] if args.compile else [])
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="jd-bench-predict-"))
    workdir.mkdir(parents=True, exist_ok=True)
    import torch

    device_name = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device_name}; torch {torch.__version__}", flush=True)
    run, plate = build(workdir, args)
    fields = field_list(plate, args.fields)
    results: dict = {"device": device_name, "fields": len(fields), "modes": {}}
    work = mpx(fields, plate, len(CHANNELS))
    for mode in modes:
        try:
            r = run_jumpdenoise(run, plate, workdir / f"den-{mode}.zarr", fields, mode, args)
        except Exception as exc:  # noqa: BLE001 - one failing mode (e.g. torch.compile) leaves the others
            print(f"jumpdenoise {mode:>13}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
        r["mpx_ch_per_s"] = work / r["seconds"]
        r["mpx_ch_per_cpu_s"] = work / r["cpu_seconds"]
        if args.engine_only:
            try:
                r["engine_only"] = engine_only(run, plate, fields, mode, args)
            except Exception as exc:  # noqa: BLE001
                print(f"  engine alone: FAILED: {type(exc).__name__}: {exc}", flush=True)
            else:
                print(f"  engine alone (fields in memory, nothing written): "
                      f"{r['engine_only']['mpx_ch_per_s']:8.2f} Mpx-ch/s", flush=True)
        results["modes"][mode] = r
        print(f"jumpdenoise {mode:>13}: {r['mpx_ch_per_s']:8.2f} Mpx-ch/s ({r['seconds']:.1f} s for "
              f"{len(fields)} fields, warm-up {r['warmup_seconds']:.1f} s; {r['mpx_ch_per_cpu_s']:.3f} Mpx-ch "
              f"per process CPU-second)", flush=True)
    if not args.skip_careamics:
        cf = fields[: args.careamics_fields] if args.careamics_fields else fields
        r = run_careamics(run, plate, workdir / "careamics.zarr", cf, args)
        r["mpx_ch_per_s"] = mpx(cf, plate, len(CHANNELS)) / r["seconds"]
        r["mpx_ch_per_cpu_s"] = mpx(cf, plate, len(CHANNELS)) / r["cpu_seconds"]
        results["careamics"] = r
        print(f"CAREamist.predict (tile 256, overlap 48, batch {args.careamics_batch}): {r['mpx_ch_per_s']:8.2f} "
              f"Mpx-ch/s ({r['seconds']:.1f} s for {len(cf)} fields; {r['mpx_ch_per_cpu_s']:.3f} Mpx-ch per "
              f"process CPU-second)", flush=True)
        for mode, m in results["modes"].items():
            m["ratio_vs_careamics"] = m["mpx_ch_per_s"] / r["mpx_ch_per_s"]
            m["cpu_ratio_vs_careamics"] = m["mpx_ch_per_cpu_s"] / r["mpx_ch_per_cpu_s"]
            print(f"ratio jumpdenoise {mode} / CAREamist.predict: {m['ratio_vs_careamics']:.2f}x wall-clock, "
                  f"{m['cpu_ratio_vs_careamics']:.2f}x per CPU-second", flush=True)
    if any("bf16" in m for m in modes):
        results["bf16_effect"] = bf16_effect(run, plate, fields[0], args.device)
        e = results["bf16_effect"]
        print(f"bf16 vs fp32 on one field: max |diff| {e['max_abs_diff']:.4g}, mean |diff| {e['mean_abs_diff']:.4g} "
              f"(raw std {e['raw_std']:.4g}: {e['max_abs_diff_over_raw_std']:.2e} / "
              f"{e['mean_abs_diff_over_raw_std']:.2e})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
