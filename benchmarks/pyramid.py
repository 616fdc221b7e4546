"""Benchmark of the default pyramid levels (``convert.pyramid_levels: auto``) against level 0 only.

A Phenix-layout plate of ``--wells`` x 9 fields x 5 channels of 1080 x 1080 uint16 LZW TIFFs is
generated first (not timed). Then ``jumpdenoise convert`` (the library call the command makes,
each run in its own process, ``--executor local``) converts it with ``pyramid_levels: 0`` and
with the default ``auto`` (5 extra levels for 1080 x 1080 fields, the coarsest 33 x 33),
alternating, ``--repeats`` times each; the fastest run of each counts. Printed per variant:
MB of TIFF per second of the conversion (the stage's own seconds; the process's wall time with
start-up in brackets), CPU seconds of the process tree, bytes and files written.

Then what a viewer zoomed out on the whole plate reads: every field at the coarsest level
against every field at level 0 (bytes and seconds, cold zarr reads through ``read_field``).

Usage::

    python benchmarks/pyramid.py [--wells 2] [--repeats 2] [--workers N] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONVERT = """
import json, sys, time
from jumpdenoise.config import load_config
from jumpdenoise.stages.convert import convert
source, out, levels, workers = sys.argv[1:5]
cfg = load_config(overrides={"source": {"path": source}, "paths": {"raw_plate": out},
                             "convert": {"pyramid_levels": levels if levels == "auto" else int(levels)},
                             "executor": {"kind": "local", "workers": int(workers)}})
report = convert(cfg)
assert report.converted == report.n_fields and not report.failures, report
print(json.dumps({"bytes_read": report.bytes_read, "fields": report.n_fields, "convert_s": report.seconds}))
"""


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_convert(source: Path, out: Path, levels: str, workers: int) -> dict:
    """One conversion in a fresh process; its wall and CPU seconds, TIFF bytes, output size and files."""
    shutil.rmtree(out, ignore_errors=True)
    cpu0, start = _children_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CONVERT, str(source), str(out), levels, str(workers)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"convert (pyramid_levels {levels}) failed:\n{proc.stdout}{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    files = [p for p in out.rglob("*") if p.is_file()]
    result.update(levels=levels, wall_s=wall, cpu_s=_children_cpu() - cpu0,
                  out_bytes=sum(p.stat().st_size for p in files), out_files=len(files))
    return result


def read_all(plate: Path, level: int) -> tuple[int, float]:
    """Read every field of ``plate`` at ``level``; (bytes of pixels, seconds)."""
    from jumpdenoise.io.ngff import plate_info, read_field

    info = plate_info(plate)
    start, total = time.perf_counter(), 0
    for well, fields in info.wells.items():
        for f in fields:
            total += read_field(plate, well, f, level=level).nbytes
    return total, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wells", type=int, default=2, help="Wells of 9 fields (default 2: 18 fields, ~200 MB).")
    parser.add_argument("--repeats", type=int, default=2, help="Runs per variant, alternating (default 2).")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Conversion processes.")
    parser.add_argument("--workdir", type=Path, default=None, help="Where to generate (default: a temp folder).")
    parser.add_argument("--keep", action="store_true", help="Keep the generated plate and outputs.")
    args = parser.parse_args()

    from jumpdenoise.io.synthetic import generate_plate

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="jd-pyramid-"))
    try:
        print(f"generating {args.wells} well(s) x 9 fields x 5 channels of 1080 x 1080 uint16 LZW TIFFs "
              "(not timed) ...", flush=True)
        source = generate_plate(workdir / "source", plate_name="PYRAMID", rows=1, columns=args.wells, fields=9,
                                size=(1080, 1080), seed=0, ground_truth=False, workers=args.workers)
        best: dict[str, dict] = {}
        for repeat in range(args.repeats):
            for levels in (("0", "auto") if repeat % 2 == 0 else ("auto", "0")):
                r = run_convert(source, workdir / f"levels-{levels}.zarr", levels, args.workers)
                mbs = r["bytes_read"] / 1e6 / r["convert_s"]
                print(f"  run {repeat + 1}, pyramid_levels {levels:>4}: {r['convert_s']:.2f} s ({r['wall_s']:.2f} s "
                      f"with start-up), {mbs:.1f} MB/s, "
                      f"{r['cpu_s']:.2f} CPU-s, {r['out_bytes'] / 1e6:.1f} MB in {r['out_files']} files", flush=True)
                if levels not in best or r["convert_s"] < best[levels]["convert_s"]:
                    best[levels] = r
        base, auto = best["0"], best["auto"]
        from jumpdenoise.io.ngff import plate_info

        coarsest = plate_info(workdir / "levels-auto.zarr").n_levels - 1
        print(f"\n{base['fields']} fields ({base['bytes_read'] / 1e6:.0f} MB of TIFF), {args.workers} worker(s), "
              f"fastest of {args.repeats} run(s) each:")
        for name, r in (("level 0 only", base), (f"auto ({coarsest} extra levels)", auto)):
            print(f"  {name:<22} {r['bytes_read'] / 1e6 / r['convert_s']:7.1f} MB/s "
                  f"({r['bytes_read'] / 1e6 / r['wall_s']:.1f} with start-up)  {r['cpu_s']:6.2f} CPU-s  "
                  f"{r['out_bytes'] / 1e6:7.1f} MB  {r['out_files']:5d} files")
        print(f"  ratio auto / level 0: throughput {base['convert_s'] / auto['convert_s']:.2f}x "
              f"({base['wall_s'] / auto['wall_s']:.2f}x with start-up), "
              f"CPU {auto['cpu_s'] / base['cpu_s']:.2f}x, bytes {auto['out_bytes'] / base['out_bytes']:.3f}x, "
              f"files {auto['out_files'] / base['out_files']:.2f}x")
        full_bytes, full_s = read_all(workdir / "levels-auto.zarr", 0)
        low_bytes, low_s = read_all(workdir / "levels-auto.zarr", coarsest)
        print(f"zoomed-out read of every field: level {coarsest} {low_bytes / 1e6:.2f} MB in {low_s:.2f} s, "
              f"level 0 {full_bytes / 1e6:.0f} MB in {full_s:.2f} s ({full_bytes / low_bytes:.0f}x the bytes, "
              f"{full_s / low_s:.1f}x the time)")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
