"""Benchmark: the predict stage's per-plate work at full plate scale, tiny pixels.

A JUMP plate has 384 wells of 9 fields: 3,456 fields, each an image group and its arrays in
the output plate, each a done marker to merge at the end. With fields of 64 x 64 pixels and
an identity network, what is left is that per-plate work; in the same run:

- ``prepare``: creating the output plate's hierarchy (7,300 zarr nodes) with
  ``zarr.create_hierarchy`` (the baseline) and with the direct metadata writer
  (:func:`jumpdenoise.io.ngff_chunks.write_metadata_documents`);
- ``finalize``: merging statistics and comparison from the done markers read back (the
  baseline: a finalize in another process, or a rerun) and from the payloads the writers
  handed back in this process.

Prints seconds and the ratios baseline / jumpdenoise.

Example::

    python benchmarks/plate_overheads.py                 # 384 wells x 9 fields
    python benchmarks/plate_overheads.py --wells 96 --fields 4
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.fixtures
sys.path.insert(0, str(Path(__file__).resolve().parent))

from predict_io import CHANNELS, save_and_clean, stand_in_predictor, trivial_model  # noqa: E402


def _config(raw: Path, out: Path):
    from jumpdenoise.config import JumpDenoiseConfig

    data = JumpDenoiseConfig().model_dump()
    data["paths"].update(raw_plate=str(raw), denoised_plate=str(out))
    data["predict"].update(model=str(raw), device="cpu", overwrite=True)  # model: unused
    data["predict"]["experimental"].update(write_processes=0)
    return JumpDenoiseConfig.model_validate(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wells", type=int, default=384)
    ap.add_argument("--fields", type=int, default=9, help="fields per well")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from jumpdenoise.executors.local import LocalExecutor
    from jumpdenoise.io import ngff_chunks
    from jumpdenoise.predict.engine import Predictor
    from jumpdenoise.stages import predict as stage
    from jumpdenoise.stages.base import bind
    from jumpdenoise.stages.session import PlateSession
    from tests.fixtures.plates import make_plate

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="jd-bench-plate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = "ABCDEFGHIJKLMNOP"
    wells = [f"{rows[i // 24]}{i % 24 + 1:02d}" for i in range(args.wells)]
    t = time.perf_counter()
    raw = make_plate(workdir / "raw.zarr", wells=wells, n_fields=args.fields, channels=CHANNELS,
                     shape_yx=(args.size, args.size), distinct=4, overwrite=True)
    n = args.wells * args.fields
    print(f"{n} fields ({args.wells} wells x {args.fields}) of {len(CHANNELS)} x {args.size}^2 built in "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    predictor = Predictor(trivial_model("cpu"), tile_size=None, overlap=0)
    real_writer = ngff_chunks.write_metadata_documents
    results: dict = {"fields": n}

    def timed(label: str, fn) -> float:
        t0 = time.perf_counter()
        fn()
        results[label] = time.perf_counter() - t0
        return results[label]

    with stand_in_predictor(predictor), PlateSession() as session:  # no model file to load
        out = workdir / "out.zarr"
        cfg = _config(raw, out)
        ngff_chunks.write_metadata_documents = lambda root, nodes: False
        timed("prepare_zarr_create_hierarchy", lambda: stage.prepare(cfg, session))
        ngff_chunks.write_metadata_documents = real_writer
        shutil.rmtree(out)
        timed("prepare_direct", lambda: stage.prepare(cfg, session))
        units = stage.plan(cfg)
        outcomes: list = []
        timed("run", lambda: outcomes.extend(LocalExecutor(1).map(bind(stage.MODULE, cfg, session), units,
                                                                   label="predict")))
        timed("finalize_payloads_in_memory", lambda: stage.finalize(cfg, outcomes, session))  # takes the payloads
        timed("finalize_markers_read", lambda: stage.finalize(cfg, outcomes, session))
    for label in ("prepare_zarr_create_hierarchy", "prepare_direct", "run", "finalize_markers_read",
                  "finalize_payloads_in_memory"):
        print(f"{label:>30}: {results[label]:6.2f} s ({results[label] / n * 1000:.2f} ms per field)", flush=True)
    results["prepare_ratio"] = results["prepare_zarr_create_hierarchy"] / results["prepare_direct"]
    results["finalize_ratio"] = results["finalize_markers_read"] / results["finalize_payloads_in_memory"]
    print(f"ratio prepare (zarr.create_hierarchy / direct): {results['prepare_ratio']:.2f}x")
    print(f"ratio finalize (markers read / payloads in memory): {results['finalize_ratio']:.2f}x")
    return save_and_clean(results, args, workdir)


if __name__ == "__main__":
    sys.exit(main())
