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

A mode is ``+``-joined tokens: ``fp32`` or ``bf16`` (autocast), ``compile``
(torch.compile), a network variant ``grouped`` / ``cl`` (channels-last) / ``split`` (one dense
sub-network per channel; default: the engine's ``auto``), ``autotune`` (cuDNN autotuning).
Plate-to-plate pipeline tokens: ``pf<N>`` prefetch, ``wp<N>`` writer processes,
``io<N>`` I/O threads, ``wpu<N>`` wells per unit, ``perunit`` (units one at a time, each
draining the pipeline, instead of streamed through one pipeline). Every token but ``bf16``
sets a benchmark-only switch of ``predict.experimental``; without them prediction runs the
measured-fastest path of the device.
``--engine-only`` also times the engine alone (fields in memory, nothing written) for each
of ``--engine-modes`` (default: ``--modes``), checks each variant's output on one field
against the fp32 grouped network, and prints a table. The mode grammar is in
``predict_modes.py``.

Examples::

    python benchmarks/predict.py                      # CPU, 4 fields
    python benchmarks/predict.py --device cuda --fields 64 --modes fp32,bf16,bf16+compile
    python benchmarks/predict.py --device cuda --engine-only --modes bf16 \
        --engine-modes bf16,bf16+autotune,bf16+cl+autotune,bf16+split+autotune,fp32+split
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.fixtures
if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/, for predict_modes when loaded by path
    sys.path.append(str(Path(__file__).resolve().parent))

from predict_modes import TOKENS, parse_mode, parse_pipeline

CHANNELS = ("DNA", "ER", "RNA", "AGP")


def build(workdir: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    from tests.fixtures.models import make_run
    from tests.fixtures.plates import make_plate

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
    from jumpdenoise.executors.local import LocalExecutor
    from jumpdenoise.stages.predict import predict

    wells = sorted({w for w, _ in fields})
    executor = LocalExecutor(1, stream="perunit" not in mode.split("+"))
    engine = parse_mode(mode)
    settings = {"device": args.device, "bf16": engine.pop("bf16"), "tile_size": args.tile_size,
                "batch_size": args.batch_size, "overwrite": True, "dtype": args.dtype,
                "experimental": {**engine, **parse_pipeline(mode)}}
    t = time.perf_counter()
    predict(model=run, plate=plate, out=out.with_name(out.name + ".warmup"), wells=wells[:1], fields=[0], **settings)
    warm = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    predict(model=run, plate=plate, out=out, wells=wells, executor=executor, **settings)
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


def engine_only(run: Path, plate: Path, fields: list, mode: str, args: argparse.Namespace,
                reference: np.ndarray | None = None) -> dict:
    """Mpx-ch/s of the engine alone: fields already in memory, nothing written (H2D/D2H included).

    Separates the device's share from the plate I/O (decompression, statistics, writes).
    With ``reference`` (the first field denoised by the fp32 grouped network), also the
    max |difference| of this mode's output on that field, over the raw field's std.
    """
    import torch

    from jumpdenoise.io.ngff import read_field
    from jumpdenoise.predict.engine import Predictor, run_fields
    from jumpdenoise.predict.model import load_model

    predictor = Predictor(load_model(run, args.device), tile_size=args.tile_size, batch_size=args.batch_size,
                          **parse_mode(mode))
    cache = {k: read_field(plate, *k, channels=list(CHANNELS)) for k in fields[:8]}
    keys = [fields[i % len(cache)] for i in range(len(fields))]
    run_fields(predictor, keys[:1], cache.__getitem__, lambda *a: None)  # warm-up (compile, cuDNN)
    check = {}
    if reference is not None:
        raw = cache[keys[0]]
        diff = float(np.abs(predictor.denoise(raw).astype(np.float64) - reference).max())
        check = {"max_abs_diff_vs_fp32_grouped": diff,
                 "max_abs_diff_over_raw_std": diff / float(raw.astype(np.float64).std())}
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    report = run_fields(predictor, keys, cache.__getitem__, lambda *a: None)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    work = mpx(keys, plate, len(CHANNELS))
    return {"seconds": seconds, "mpx_ch_per_s": work / seconds, "compute_seconds": report.compute_seconds,
            "variant_used": predictor.variant_used, **check}


def engine_reference(run: Path, plate: Path, field: tuple[str, int], args: argparse.Namespace) -> np.ndarray:
    """The field denoised by the network as it is (fp32, grouped, deterministic): the variants' reference."""
    from jumpdenoise.io.ngff import read_field
    from jumpdenoise.predict.engine import Predictor
    from jumpdenoise.predict.model import load_model

    predictor = Predictor(load_model(run, args.device), tile_size=args.tile_size, batch_size=args.batch_size,
                          network_variant="grouped")
    return predictor.denoise(read_field(plate, *field, channels=list(CHANNELS))).astype(np.float64)


def engine_section(run: Path, plate: Path, fields: list, modes: list[str], args: argparse.Namespace) -> dict:
    """Time the engine alone in each mode (a failing mode is reported and skipped); print a table."""
    import gc

    import torch

    print(f"engine alone (fields in memory, nothing written), {len(fields)} fields:", flush=True)
    try:
        reference = engine_reference(run, plate, fields[0], args)
    except Exception as exc:  # noqa: BLE001 - the timings are still worth having
        print(f"  reference (fp32 grouped): FAILED: {type(exc).__name__}: {exc}", flush=True)
        reference = None
    out: dict = {}
    for mode in modes:
        try:
            r = engine_only(run, plate, fields, mode, args, reference)
        except Exception as exc:  # noqa: BLE001 - one failing variant (e.g. torch.compile) leaves the others
            print(f"  {mode:>32}: FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                  flush=True)
            out[mode] = {"failed": f"{type(exc).__name__}: {exc}"}
        else:
            out[mode] = r
            diff = r.get("max_abs_diff_over_raw_std")
            print(f"  {mode:>32}: {r['mpx_ch_per_s']:9.2f} Mpx-ch/s (variant {r['variant_used']}"
                  + (f", max |diff| vs fp32 grouped {diff:.2e} raw std)" if diff is not None else ")"), flush=True)
        finally:
            gc.collect()
            if "compile" in mode:
                torch._dynamo.reset()
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    ok = [m for m in modes if "mpx_ch_per_s" in out[m]]
    base = out[ok[0]]["mpx_ch_per_s"] if ok else None
    print(f"\n{'engine mode':>32} | {'variant used':>13} | {'Mpx-ch/s':>9} | {'vs ' + ok[0] if ok else '':>14} | "
          f"max|diff|/raw std", flush=True)
    for m in modes:
        r = out[m]
        if "mpx_ch_per_s" not in r:
            print(f"{m:>32} | {'FAILED':>13} |", flush=True)
            continue
        diff = r.get("max_abs_diff_over_raw_std")
        print(f"{m:>32} | {r['variant_used']:>13} | {r['mpx_ch_per_s']:9.2f} | {r['mpx_ch_per_s'] / base:13.2f}x | "
              + (f"{diff:.2e}" if diff is not None else "-"), flush=True)
    return out


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
    ap.add_argument("--modes", default=None,
                    help="comma list of modes for the plate-to-plate runs, e.g. fp32,bf16,bf16+compile "
                         f"(tokens: {', '.join(TOKENS)})")
    ap.add_argument("--engine-modes", default=None,
                    help="comma list of modes for --engine-only (default: --modes), e.g. "
                         "bf16,bf16+autotune,bf16+cl+autotune,bf16+split+autotune")
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
    ap.add_argument("--best-engine", type=int, default=0,
                    help="with --engine-only: also run the N fastest engine modes plate to plate")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(format="  %(name)s: %(message)s")
    logging.getLogger("jumpdenoise.predict").setLevel(logging.INFO)  # per unit: where the driving thread waits
    cuda = args.device.startswith("cuda")
    args.fields = args.fields or (64 if cuda else 4)
    modes = args.modes.split(",") if args.modes else ["fp32"] + (["bf16"] if args.bf16 else []) + \
        (["bf16+compile" if args.bf16 else "fp32+compile"] if args.compile else [])
    engine_modes = [m.strip() for m in args.engine_modes.split(",")] if args.engine_modes else list(modes)
    for mode in [*modes, *engine_modes]:
        try:
            parse_mode(mode)
        except ValueError as exc:
            ap.error(str(exc))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="jd-bench-predict-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if not args.workdir:  # plates of several GB: removed on any exit, timeout's SIGTERM included
        atexit.register(shutil.rmtree, workdir, True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import torch

    device_name = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device_name}; torch {torch.__version__}", flush=True)
    run, plate = build(workdir, args)
    fields = field_list(plate, args.fields)
    results: dict = {"device": device_name, "fields": len(fields), "modes": {}}
    work = mpx(fields, plate, len(CHANNELS))
    if args.engine_only:  # first: its fastest modes can join the plate-to-plate runs
        results["engine_only"] = engine_section(run, plate, fields, engine_modes, args)
        ranked = sorted((m for m, r in results["engine_only"].items() if "mpx_ch_per_s" in r),
                        key=lambda m: -results["engine_only"][m]["mpx_ch_per_s"])
        best = [m for m in ranked if m not in modes][: max(0, args.best_engine)]
        if best:
            print(f"plate to plate also: {', '.join(best)} (fastest engine modes)", flush=True)
        modes = [*modes, *best]
    for mode in modes:
        try:
            r = run_jumpdenoise(run, plate, workdir / f"den-{mode}.zarr", fields, mode, args)
        except Exception as exc:  # noqa: BLE001 - one failing mode (e.g. torch.compile) leaves the others
            print(f"jumpdenoise {mode:>13}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
        r["mpx_ch_per_s"] = work / r["seconds"]
        r["mpx_ch_per_cpu_s"] = work / r["cpu_seconds"]
        results["modes"][mode] = r
        print(f"jumpdenoise {mode:>13}: {r['mpx_ch_per_s']:8.2f} Mpx-ch/s ({r['seconds']:.1f} s for "
              f"{len(fields)} fields, warm-up {r['warmup_seconds']:.1f} s; {r['mpx_ch_per_cpu_s']:.3f} Mpx-ch "
              f"per process CPU-second)", flush=True)
        if "mpx_ch_per_s" in results.get("engine_only", {}).get(mode, {}):
            r["engine_only"] = results["engine_only"][mode]
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
