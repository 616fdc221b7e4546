"""Benchmark of `export-zarr --ngff 0.4` against a plain re-encode of the same plate.

A raw plate of ``--wells`` x ``--fields`` fields of 5 channels x ``--size`` pixels (the
convert defaults: unsharded Blosc lz4 + bit-shuffle) is written first (not timed). Then:

1. plain re-encode: every level array of every field read and written again as zarr v3
   with the same chunks and codecs, on the same number of threads (the floor of any
   copy that decodes and encodes the pixels);
2. ``export_ngff_v04`` (what ``jumpdenoise export-zarr PLATE OUT --ngff 0.4`` runs).

Prints MB (1e6 bytes of uint16 pixels) per second of each and their ratio.

Usage::

    python benchmarks/ngff_v04.py [--wells 8] [--fields 4] [--size 1080] [--workers N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.fixtures


def _plate(path: Path, n_wells: int, n_fields: int, size: int) -> int:
    from tests.fixtures.plates import make_plate

    wells = [f"{'ABCDEFGH'[i // 12]}{i % 12 + 1:02d}" for i in range(n_wells)]
    make_plate(path, wells=wells, n_fields=n_fields, channels=("DNA", "ER", "RNA", "AGP", "Mito"),
               shape_yx=(size, size), distinct=2)
    return n_wells * n_fields * 5 * size * size * 2


def _reencode(src: Path, dst: Path, workers: int) -> None:
    import zarr

    from jumpdenoise.io.ngff import plate_info

    info = plate_info(src)
    paths = [f"{info.well_paths[w]}/{info.field_paths[w][f]}/{lv}"
             for w, fs in info.wells.items() for f in fs for lv in info.level_paths]

    def copy(path: str) -> None:
        a = zarr.open_array(src / path, mode="r")
        b = zarr.create_array(str(dst / path), shape=a.shape, dtype=a.dtype, chunks=a.chunks, shards=a.shards,
                              compressors=a.compressors, serializer=a.serializer, fill_value=a.fill_value)
        b[...] = a[...]

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(copy, paths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wells", type=int, default=8)
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--size", type=int, default=1080)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    from jumpdenoise.io.ngff_v04 import export_ngff_v04

    work = Path(tempfile.mkdtemp(prefix="jd-bench-v04-", dir=args.workdir))
    try:
        n_bytes = _plate(work / "raw.zarr", args.wells, args.fields, args.size)
        t0 = time.perf_counter()
        _reencode(work / "raw.zarr", work / "reencoded.zarr", args.workers)
        t_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        export_ngff_v04(work / "raw.zarr", work / "v04.zarr", workers=args.workers)
        t_v04 = time.perf_counter() - t0
        print(f"plate: {args.wells} wells x {args.fields} fields x 5 ch x {args.size}^2 uint16 "
              f"= {n_bytes / 1e6:.0f} MB; {args.workers} threads")
        print(f"plain re-encode (zarr v3): {t_plain:7.2f} s  {n_bytes / 1e6 / t_plain:8.1f} MB/s")
        print(f"export-zarr --ngff 0.4:    {t_v04:7.2f} s  {n_bytes / 1e6 / t_v04:8.1f} MB/s")
        print(f"ratio (0.4 export time / re-encode time): {t_v04 / t_plain:.2f}")
        import zarr

        same = np.array_equal(zarr.open_array(work / "v04.zarr" / "A/1/0/0", mode="r")[...],
                              zarr.open_array(work / "raw.zarr" / "A/1/0/0", mode="r")[...])
        print(f"A01/0 level 0 identical in the copy: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
