"""Benchmark: the plate-to-plate prediction pipeline with a near-free network (I/O dominates).

Reads fields from a raw OME-Zarr plate, "denoises" them with a 1x1 identity convolution
wrapped as a :class:`~jumpdenoise.predict.model.LoadedModel`, and writes them like the
predict stage does (:class:`~jumpdenoise.predict.writers.PlateFieldWriter`: output dtype,
write_field with its pyramid, statistics partial, raw-vs-denoised comparison, done marker),
through :func:`~jumpdenoise.predict.engine.run_fields`. In the same run:

- ``legacy``: a plain write side (host normalisation, a comparison with two-index medians
  and float64 copies), writer threads;
- ``threads``: normalisation on the device, the current comparison, writer threads;
- ``processes-N``: the same in N writer processes fed through shared memory;
- ``stage-perunit`` / ``stage-streamed`` (with ``--stage``): the whole predict stage
  (prepare, units, finalize) with the same identity network, units one at a time (each
  draining the pipeline) or streamed through one pipeline, ``--wells-per-unit`` wells each;
  prints the ratio streamed / per-unit.

Prints fields/s and CPU-seconds per field (this process + writer processes, pool start-up
excluded), and the ratios to ``legacy``. On a small shared machine the CPU-seconds per
field say more than fields/s: they decide how many fields/s a 16-core GPU node can write.

Example::

    python benchmarks/predict_io.py --fields 24 --processes 2
    python benchmarks/predict_io.py --fields 128 --modes threads --stage --wells-per-unit 1
    python benchmarks/predict_io.py --device cuda --fields 128 --processes 8
    python benchmarks/predict_io.py --device cuda --model RUN_DIR --bf16     # the real network
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.fixtures

CHANNELS = ("DNA", "ER", "RNA", "AGP")


def trivial_model(device: str):
    """A 1x1 grouped identity convolution as a LoadedModel (receptive field 0, stride 1)."""
    import torch

    from jumpdenoise.predict.model import LoadedModel

    conv = torch.nn.Conv2d(len(CHANNELS), len(CHANNELS), 1, groups=len(CHANNELS))
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    return LoadedModel(module=conv.eval().to(device), channels=list(CHANNELS), mean=np.full(4, 400.0),
                       std=np.full(4, 150.0), careamics_config={}, source=Path("identity-1x1"),
                       _receptive_field=0)


def _old_noise_sigma(image: np.ndarray, crop: int = 512) -> float:
    a = np.asarray(image, dtype=np.float32)
    h, w = a.shape
    y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    a = a[y0:y0 + crop, x0:x0 + crop]
    hp = (a[:-2, :-2] + a[:-2, 2:] + a[2:, :-2] + a[2:, 2:]
          - 2 * (a[:-2, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] + a[2:, 1:-1]) + 4 * a[1:-1, 1:-1])
    med = np.median(hp)
    return float(1.4826 * np.median(np.abs(hp - med)) / 6.0)


def _old_comparison(raw: np.ndarray, den: np.ndarray) -> dict:
    out: dict = {k: [] for k in ("count", "raw_sum", "raw_sumsq", "den_sum", "den_sumsq", "raw_noise", "den_noise")}
    for r, d in zip(raw, den):
        r64, d64 = r.astype(np.float64), d.astype(np.float64)
        out["count"].append(float(r.size))
        out["raw_sum"].append(float(r64.sum()))
        out["raw_sumsq"].append(float(np.square(r64).sum()))
        out["den_sum"].append(float(d64.sum()))
        out["den_sumsq"].append(float(np.square(d64).sum()))
        out["raw_noise"].append(_old_noise_sigma(r))
        out["den_noise"].append(_old_noise_sigma(d))
    return {"cmp." + k: np.asarray(v) for k, v in out.items()}


@dataclass(frozen=True)
class LegacyWriter:
    """A plain field writer (the baseline): host-side comparison with float64 copies."""

    out: str
    dtype: str

    def __call__(self, key, raw, pred) -> None:
        from jumpdenoise.compute.stats import field_partial
        from jumpdenoise.io import ngff
        from jumpdenoise.predict.writers import to_output_dtype

        data = to_output_dtype(pred, self.dtype)
        ngff.write_field(self.out, key[0], key[1], data)
        ngff.mark_done(self.out, ngff.field_key(*key), {**field_partial(data, list(CHANNELS)),
                                                         **_old_comparison(raw, data)})


def _children_cpu() -> float:
    """CPU seconds of this process's writer processes: the live ones (from /proc) and those
    that ended and were waited for (``RUSAGE_CHILDREN``: a stage's session stops its writers)."""
    import multiprocessing as mp
    import resource

    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = ended.ru_utime + ended.ru_stime
    for p in mp.active_children():
        if not p.name.startswith("jd-writer"):
            continue
        try:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def run_mode(mode: str, procs: int, plate: Path, out: Path, keys: list, args: argparse.Namespace) -> dict:
    from jumpdenoise.io.ngff import create_plate_like, read_field
    from jumpdenoise.predict.engine import Predictor, run_fields
    from jumpdenoise.predict.normalization import normalize
    from jumpdenoise.predict.pipeline import HANDOVER_DEPTH
    from jumpdenoise.predict.writers import PlateFieldWriter, WriterPool, resolve_io_threads

    class LegacyPredictor(Predictor):
        def upload(self, raw):
            return self.to_device(normalize(raw, self.model.mean, self.model.std))

    cls = LegacyPredictor if mode == "legacy" else Predictor
    if args.model:
        from jumpdenoise.predict.model import load_model

        predictor = cls(load_model(args.model, args.device), tile_size=None, bf16=args.bf16)
    else:
        predictor = cls(trivial_model(args.device), tile_size=None, overlap=0)
    threads = resolve_io_threads(args.io_threads)

    def fresh() -> None:
        create_plate_like(plate, out, dtype=args.dtype, kind="denoised", channels=list(CHANNELS), overwrite=True)

    def read(k):
        return read_field(plate, k[0], k[1])

    writer = (LegacyWriter if mode == "legacy" else PlateFieldWriter)(str(out), args.dtype, *(
        () if mode == "legacy" else (CHANNELS,)))
    fresh()
    pool = WriterPool()  # as the stage's session: started once, kept between calls
    try:
        if procs:  # started before timing
            pool.get(procs, procs + args.prefetch + HANDOVER_DEPTH, read(keys[0]),
                     (len(CHANNELS), *read(keys[0]).shape[1:]))
        run_fields(predictor, keys[:2], read, writer, prefetch=args.prefetch, readers=max(1, threads // 2),
                   writers=threads, write_processes=procs, writer_pool=pool)  # warm-up
        fresh()
        cpu0, kids0, t0 = time.process_time(), _children_cpu(), time.perf_counter()
        report = run_fields(predictor, keys, read, writer, prefetch=args.prefetch, readers=max(1, threads // 2),
                            writers=threads, write_processes=procs, writer_pool=pool)
        seconds = time.perf_counter() - t0
        main_cpu, kids_cpu = time.process_time() - cpu0, _children_cpu() - kids0
    finally:
        pool.close()
    if report.failures:
        raise RuntimeError(f"{mode}: {report.failures[0].error!r}")
    n = len(report.done)
    return {"fields": n, "seconds": seconds, "fields_per_s": n / seconds,
            "cpu_s_per_field": (main_cpu + kids_cpu) / n, "main_cpu_s_per_field": main_cpu / n,
            "writer_processes_cpu_s_per_field": kids_cpu / n, "write_processes": procs, "threads": threads}


def save_and_clean(results: dict, args: argparse.Namespace, workdir: Path) -> int:
    """Write ``results`` to ``--json`` if given, remove a temporary ``workdir``; exit status 0."""
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


@contextlib.contextmanager
def stand_in_predictor(predictor: Any) -> Iterator[None]:
    """Have the predict stage use ``predictor`` instead of loading its model file (restored after)."""
    from jumpdenoise.stages import predict as stage
    from jumpdenoise.stages import predict_units

    saved = stage.get_predictor, predict_units.get_predictor
    stage.get_predictor = predict_units.get_predictor = lambda config, session: predictor
    try:
        yield
    finally:
        stage.get_predictor, predict_units.get_predictor = saved


def run_stage(stream: bool, procs: int, plate: Path, out: Path, keys: list, args: argparse.Namespace) -> dict:
    """The predict stage end to end (identity network), units streamed or one at a time."""
    from jumpdenoise.executors.local import LocalExecutor
    from jumpdenoise.predict.engine import Predictor
    from jumpdenoise.predict.writers import resolve_io_threads
    from jumpdenoise.stages import predict as stage

    predictor = Predictor(trivial_model(args.device), tile_size=None, overlap=0)
    wells = sorted({w for w, _ in keys})
    experimental = {"write_processes": procs, "prefetch": args.prefetch, "wells_per_unit": args.wells_per_unit,
                    "io_threads": args.io_threads}
    settings = {"device": args.device, "overwrite": True, "dtype": args.dtype, "experimental": experimental}
    with stand_in_predictor(predictor):  # no model file to load
        warm = out.with_name(out.name + ".warm")
        stage.predict(model=plate, plate=plate, out=warm, wells=wells[:1], fields=[0], **settings)
        cpu0, kids0, t0 = time.process_time(), _children_cpu(), time.perf_counter()
        stage.predict(model=plate, plate=plate, out=out, wells=wells, executor=LocalExecutor(1, stream=stream),
                      **settings)
        seconds = time.perf_counter() - t0
        main_cpu, kids_cpu = time.process_time() - cpu0, _children_cpu() - kids0
    n = len(keys)
    return {"fields": n, "seconds": seconds, "fields_per_s": n / seconds, "cpu_s_per_field": (main_cpu + kids_cpu) / n,
            "main_cpu_s_per_field": main_cpu / n, "writer_processes_cpu_s_per_field": kids_cpu / n,
            "write_processes": procs, "threads": resolve_io_threads(args.io_threads),
            "wells_per_unit": args.wells_per_unit}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fields", type=int, default=24)
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--processes", default=None,
                    help="writer processes, or a comma list (one 'processes' run each; default max(2, CPUs - 2), <= 8)")
    ap.add_argument("--io-threads", type=int, default=None)
    ap.add_argument("--prefetch", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "uint16"])
    ap.add_argument("--modes", default="legacy,threads,processes")
    ap.add_argument("--model", default=None, help="a real model (4 channels DNA, ER, RNA, AGP) instead of the identity")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (with --model)")
    ap.add_argument("--stage", action="store_true",
                    help="also run the predict stage end to end, units one at a time and streamed")
    ap.add_argument("--wells-per-unit", type=int, default=8, help="wells per unit of --stage (4 fields per well)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from jumpdenoise.compute.threads import cpu_threads
    from jumpdenoise.io.ngff import plate_info
    from tests.fixtures.plates import make_plate

    counts = [int(v) for v in args.processes.split(",")] if args.processes else [max(2, min(8, cpu_threads() - 2))]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="jd-bench-predict-io-"))
    workdir.mkdir(parents=True, exist_ok=True)
    per_well = 4
    wells = [f"{'ABCDEFGHIJKLMNOP'[i // 24]}{i % 24 + 1:02d}" for i in range(math.ceil(args.fields / per_well))]
    t = time.perf_counter()
    plate = make_plate(workdir / "raw.zarr", wells=wells, n_fields=per_well, channels=CHANNELS,
                       shape_yx=(args.size, args.size), distinct=min(4, args.fields), overwrite=True)
    keys = plate_info(plate).field_keys()[: args.fields]
    print(f"{len(keys)} fields of {len(CHANNELS)} x {args.size}^2 uint16 ({time.perf_counter() - t:.1f} s to build); "
          f"{cpu_threads()} CPUs; device {args.device}; output {args.dtype}; "
          f"network {args.model or 'identity 1x1'}{' bf16' if args.bf16 else ''}", flush=True)
    results: dict = {"cpus": cpu_threads(), "device": args.device, "fields": len(keys), "modes": {}}
    runs = [(m, 0) for m in args.modes.split(",") if m != "processes"]
    runs += [(f"processes-{n}", n) for n in counts if "processes" in args.modes.split(",")]
    for mode, procs in runs:
        r = run_mode(mode, procs, plate, workdir / f"out-{mode}.zarr", keys, args)
        results["modes"][mode] = r
        print(f"{mode:>12} (threads {r['threads']}, processes {r['write_processes']}): {r['fields_per_s']:6.2f} "
              f"fields/s, {r['cpu_s_per_field']:.3f} CPU-s per field (this process {r['main_cpu_s_per_field']:.3f}, "
              f"writer processes {r['writer_processes_cpu_s_per_field']:.3f})", flush=True)
    if args.stage:
        procs = counts[0] if "processes" in args.modes.split(",") else 0
        for stream in (False, True):
            mode = "stage-streamed" if stream else "stage-perunit"
            r = run_stage(stream, procs, plate, workdir / f"out-{mode}.zarr", keys, args)
            results["modes"][mode] = r
            print(f"{mode:>14} (processes {procs}, {args.wells_per_unit} well(s) per unit): {r['fields_per_s']:6.2f} "
                  f"fields/s, {r['cpu_s_per_field']:.3f} CPU-s per field", flush=True)
        ratio = results["modes"]["stage-streamed"]["fields_per_s"] / results["modes"]["stage-perunit"]["fields_per_s"]
        results["stage_streamed_vs_perunit"] = ratio
        print(f"ratio stage-streamed / stage-perunit: {ratio:.2f}x fields/s", flush=True)
    base = results["modes"].get("legacy")
    if base:
        for mode, r in results["modes"].items():
            r["speedup_vs_legacy"] = r["fields_per_s"] / base["fields_per_s"]
            r["cpu_ratio_vs_legacy"] = base["cpu_s_per_field"] / r["cpu_s_per_field"]
            print(f"ratio {mode} / legacy: {r['speedup_vs_legacy']:.2f}x fields/s, "
                  f"{r['cpu_ratio_vs_legacy']:.2f}x fewer CPU-s per field", flush=True)
    return save_and_clean(results, args, workdir)


if __name__ == "__main__":
    sys.exit(main())
