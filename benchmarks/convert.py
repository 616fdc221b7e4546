"""Benchmark of `jumpdenoise convert` against the naive loop and the decode-only limit.

A plate of ``--size-gb`` of 16-bit LZW TIFFs (1080 x 1080, like the Phenix exports of
JUMP) is generated first (not timed). Then, in this order, each in its own process:

1. decode-only limit: every TIFF read and decoded with tifffile by ``nproc`` processes,
   nothing written;
2. naive loop: one process, ``tifffile.imread`` each file and write it to a zarr group
   (zarr's default codec), the loop a user would write;
3. ``jumpdenoise convert SOURCE OUT.zarr`` as a user runs it (its default executor: a Dask
   LocalCluster of ``nproc`` workers), timed end to end: start-up, discovery, metadata,
   conversion, statistics;
4. the same with ``--executor local`` (a process pool), for comparison;
5. for information only, decode-only with libtiff (``imagecodecs.tiff_decode``, the LZW
   decoder ``jumpdenoise convert`` uses, ~1.6x faster than tifffile's): the ratios against it
   show how much of the conversion's speed comes from the faster decoder.

Throughput is MB (1e6 bytes) of TIFF per second of wall time. Peak memory is the largest
RSS of the process tree seen (sampled every 50 ms with psutil). Run with ``--size-gb 0.5``
too to see that memory does not grow with the plate.

Usage::

    python benchmarks/convert.py [--size-gb 2] [--keep] [--workdir DIR] [--workers N]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FIELD_BYTES_ESTIMATE = 5 * 2.3e6  # 5 channels of ~2.3 MB LZW 1080 x 1080 uint16 TIFFs


def tiffs(folder: Path) -> list[Path]:
    """The TIFF files of a generated plate, sorted."""
    return sorted(p for p in folder.iterdir() if p.suffix == ".tiff")


# ----------------------------------------------------------------------------- child processes


def _decode(paths: list[str]) -> int:
    import tifffile

    return sum(int(tifffile.imread(p).shape[0]) for p in paths)


def _decode_libtiff(paths: list[str]) -> int:
    import imagecodecs

    rows = 0
    for p in paths:
        with open(p, "rb") as fh:
            rows += int(imagecodecs.tiff_decode(fh.read(), index=0).shape[0])
    return rows


def run_decode_only(source: Path, workers: int, decoder=_decode) -> None:
    """Decode every TIFF with ``workers`` processes, write nothing."""
    from concurrent.futures import ProcessPoolExecutor

    files = [str(p) for p in tiffs(source)]
    batches = [files[i:i + 8] for i in range(0, len(files), 8)]
    with ProcessPoolExecutor(workers) as pool:
        assert sum(pool.map(decoder, batches)) == 1080 * len(files)


def run_naive(source: Path, out: Path) -> None:
    """The naive loop: imread each file, write it to zarr, one process."""
    import tifffile
    import zarr

    root = zarr.open_group(out, mode="w")
    for p in tiffs(source):
        root.create_array(p.stem, data=tifffile.imread(p))


# ----------------------------------------------------------------------------- measuring


class PeakRSS:
    """Sample the RSS of a process and all its descendants; keep the peak (bytes)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                for p in [self.proc, *self.proc.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str]) -> tuple[float, int, str, float]:
    """Run ``cmd``; return (wall seconds, peak RSS of its tree, output, CPU seconds of its tree)."""
    cpu0 = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = PeakRSS(proc.pid)
    output, _ = proc.communicate()
    wall = time.perf_counter() - start
    peak = sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}")
    return wall, peak, output, _children_cpu() - cpu0


def generate(source_root: Path, size_gb: float, workers: int) -> Path:
    from jumpdenoise.io.synthetic import generate_plate

    n_fields = max(1, math.ceil(size_gb * 1e9 / FIELD_BYTES_ESTIMATE))
    fields = 9
    wells = math.ceil(n_fields / fields)
    columns = min(24, wells)
    rows = math.ceil(wells / columns)
    print(f"generating {rows} x {columns} wells x {fields} fields x 5 channels of 1080 x 1080 uint16 LZW TIFFs "
          f"in {source_root} (not timed) ...", flush=True)
    start = time.perf_counter()
    images = generate_plate(source_root, plate_name="BENCH", rows=rows, columns=columns, fields=fields,
                            size=(1080, 1080), seed=0, ground_truth=False, workers=workers)
    print(f"  generated in {time.perf_counter() - start:.0f} s", flush=True)
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=2.0, help="TIFF bytes to generate, in GB (default 2).")
    parser.add_argument("--keep", action="store_true", help="Keep the generated plate and outputs.")
    parser.add_argument("--workdir", type=Path, default=None, help="Where to generate (default: a temp folder).")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Processes (default: nproc).")
    parser.add_argument("--source", type=Path, default=None, help="Use this generated Images folder instead.")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="jd-bench-convert-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        source = args.source or generate(workdir / "source", args.size_gb, args.workers)
        files = tiffs(source)
        total = sum(p.stat().st_size for p in files)
        mb = total / 1e6
        load = os.getloadavg()
        print(f"plate: {len(files)} TIFFs, {mb:.0f} MB; {args.workers} worker(s); "
              f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
        me = [sys.executable, __file__]
        cli = [sys.executable, "-c", "from jumpdenoise.cli import main; main()"]
        results = {}
        results["decode-only"] = timed([*me, "_decode", str(source), str(args.workers)])
        outputs = [workdir / "naive.zarr", workdir / "jd.zarr", workdir / "jd-local.zarr"]
        for out in outputs:  # from an earlier run in the same workdir
            shutil.rmtree(out, ignore_errors=True)
        results["naive"] = timed([*me, "_naive", str(source), str(outputs[0])])
        results["convert"] = timed([*cli, "convert", str(source), str(outputs[1]), "--workers", str(args.workers)])
        results["convert-local"] = timed([*cli, "convert", str(source), str(outputs[2]),
                                          "--workers", str(args.workers), "--executor", "local"])
        results["decode-libtiff"] = timed([*me, "_decode_libtiff", str(source), str(args.workers)])
        if not args.keep:
            for out in outputs:
                shutil.rmtree(out, ignore_errors=True)
        report_line = next((ln for ln in results["convert"][2].splitlines() if "MB/s" in ln), "")

        print(f"\n{'method':<16}{'seconds':>9}{'MB/s':>9}{'peak RSS MB':>13}{'CPU s':>8}{'MB/CPU s':>10}")
        for name, (wall, peak, _, cpu) in results.items():
            print(f"{name:<16}{wall:>9.1f}{mb / wall:>9.1f}{peak / 1e6:>13.0f}{cpu:>8.1f}{mb / cpu:>10.1f}")
        conv = mb / results["convert"][0]
        print(f"\njumpdenoise convert (default Dask executor), end to end: {conv:.1f} MB/s")
        print(f"  its own report: {report_line.strip()}")
        print(f"  vs naive loop:  {conv / (mb / results['naive'][0]):.2f}x   (target >= 1.7x)")
        print(f"  vs decode-only: {conv / (mb / results['decode-only'][0]):.2f}x   (target >= 0.7x)")
        conv_local = mb / results["convert-local"][0]
        print(f"jumpdenoise convert --executor local: {conv_local:.1f} MB/s "
              f"({conv_local / (mb / results['naive'][0]):.2f}x naive, "
              f"{conv_local / (mb / results['decode-only'][0]):.2f}x decode-only)")
        lib = mb / results["decode-libtiff"][0]
        print(f"for information: decode-only with libtiff (the decoder convert uses) {lib:.1f} MB/s; "
              f"convert is {conv / lib:.2f}x of it (Dask), {conv_local / lib:.2f}x (local)")
        cpu = {name: r[3] for name, r in results.items()}
        w = args.workers
        print("from CPU time (robust to other load on the machine; a projection of the wall-time ratios on an "
              f"idle machine where convert and decode-only keep {w} cores busy and naive one):")
        print(f"  projected vs naive loop:  {cpu['naive'] / (cpu['convert'] / w):.2f}x")
        print(f"  projected vs decode-only: {cpu['decode-only'] / cpu['convert']:.2f}x   "
              f"(vs decode-only with libtiff: {cpu['decode-libtiff'] / cpu['convert']:.2f}x)")
        print(f"  CPU per plane: convert {1e3 * cpu['convert'] / len(files):.1f} ms, "
              f"decode-only {1e3 * cpu['decode-only'] / len(files):.1f} ms, "
              f"decode-only with libtiff {1e3 * cpu['decode-libtiff'] / len(files):.1f} ms")
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            print(f"kept: {workdir}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_decode":
        run_decode_only(Path(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_decode_libtiff":
        run_decode_only(Path(sys.argv[2]), int(sys.argv[3]), decoder=_decode_libtiff)
    elif len(sys.argv) > 1 and sys.argv[1] == "_naive":
        run_naive(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
