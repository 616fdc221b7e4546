"""Cost of the per-chunk CRC-32C checksum on writing and reading fields (direct chunk I/O).

Two arrays of the same field shape and codecs (blosc, as a plate's defaults) differ only
by the trailing ``crc32c`` codec; the same fields are written
(:func:`~jumpdenoise.io.ngff_chunks.write_whole_chunks`) and read back
(:func:`~jumpdenoise.io.ngff_chunks.read_whole_chunks`, checksums verified) into each,
alternating, and the script prints milliseconds per field and the checksum's share.

    python benchmarks/chunk_checksum.py --fields 12 --size 1080 --channels 5
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.fixtures


def make_array(path: Path, shape: tuple[int, int, int], checksum: bool):
    import zarr
    from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec

    compressors = [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")] + ([Crc32cCodec()] if checksum else [])
    return zarr.create_array(store=str(path), shape=shape, chunks=(1, *shape[1:]), dtype="uint16", fill_value=0,
                             serializer=BytesCodec(), compressors=compressors, config={"write_empty_chunks": True})


def checksum_only_ms(fields: list[np.ndarray]) -> float:
    """Milliseconds per field of computing the CRC-32C of its compressed chunks (no I/O)."""
    from numcodecs import Blosc

    from jumpdenoise.io.ngff_chunks import crc32c

    blosc = Blosc(cname="lz4", clevel=5, shuffle=Blosc.BITSHUFFLE)
    payloads = [[blosc.encode(np.ascontiguousarray(plane)) for plane in field] for field in fields]
    t = time.perf_counter()
    for _ in range(10):
        for field in payloads:
            for payload in field:
                crc32c(payload)
    return (time.perf_counter() - t) / (10 * len(fields)) * 1e3


def main() -> None:
    from jumpdenoise.io.ngff_chunks import read_whole_chunks, write_whole_chunks
    from tests.fixtures.plates import noisy_blobs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=12)
    parser.add_argument("--size", type=int, default=1080)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shape = (args.channels, args.size, args.size)
    fields = [noisy_blobs(args.channels, shape[1:], seed) for seed in range(args.fields)]
    root = Path(tempfile.mkdtemp(prefix="jd-crc-"))
    seconds = {(crc, op): 0.0 for crc in (False, True) for op in ("write", "read")}
    try:
        arrays = {crc: [make_array(root / f"{crc}-{i}", shape, crc) for i in range(args.fields)] for crc in (False, True)}
        for _ in range(args.repeats):
            for crc in (False, True):  # alternating: both see the same page-cache and CPU state
                t = time.perf_counter()
                for arr, data in zip(arrays[crc], fields):
                    assert write_whole_chunks(arr, data)
                seconds[(crc, "write")] += time.perf_counter() - t
                t = time.perf_counter()
                for arr, data in zip(arrays[crc], fields):
                    got = read_whole_chunks(arr, missing="error")
                seconds[(crc, "read")] += time.perf_counter() - t
                assert np.array_equal(got, fields[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    crc_ms = checksum_only_ms(fields)
    n = args.fields * args.repeats
    print(f"{args.fields} fields of {shape} uint16, {args.repeats} repeats (ms per field):")
    print(f"  the CRC-32C alone, over a field's compressed chunks: {crc_ms:.2f}")
    for op in ("write", "read"):
        base, crc = seconds[(False, op)] / n * 1e3, seconds[(True, op)] / n * 1e3
        print(f"  {op:5s}: without checksum {base:7.2f}  with crc32c {crc:7.2f}  "
              f"cost {crc - base:+.2f} ms ({(crc / base - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
