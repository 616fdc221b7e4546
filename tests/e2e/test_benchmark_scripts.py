"""The I/O benchmarks run end to end on tiny settings and report what they claim to measure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{script}.json"
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--json", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_predict_io_stage_streamed_and_per_unit(tmp_path: Path) -> None:
    r = _run("predict_io.py", "--fields", "8", "--size", "64", "--processes", "1", "--stage", "--wells-per-unit", "1",
             tmp_path=tmp_path)
    modes = r["modes"]
    assert set(modes) == {"legacy", "threads", "processes-1", "stage-perunit", "stage-streamed"}
    assert all(m["fields"] == 8 and m["fields_per_s"] > 0 and m["cpu_s_per_field"] > 0 for m in modes.values())
    assert modes["processes-1"]["writer_processes_cpu_s_per_field"] > 0  # the writing happened in a process
    assert r["stage_streamed_vs_perunit"] > 0


def test_plate_overheads_times_both_ways(tmp_path: Path) -> None:
    r = _run("plate_overheads.py", "--wells", "3", "--fields", "2", "--size", "32", tmp_path=tmp_path)
    assert r["fields"] == 6
    for key in ("prepare_zarr_create_hierarchy", "prepare_direct", "run", "finalize_markers_read",
                "finalize_payloads_in_memory", "prepare_ratio", "finalize_ratio"):
        assert r[key] > 0, key


def test_predict_benchmark_reports_ratio_and_removes_its_plates(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "predict.json"
    proc = subprocess.run([sys.executable, str(BENCH / "predict.py"), "--fields", "2", "--size", "96", "--modes",
                           "fp32", "--careamics-fields", "1", "--json", str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["fields"] == 2 and r["modes"]["fp32"]["mpx_ch_per_s"] > 0
    assert r["modes"]["fp32"]["ratio_vs_careamics"] > 0 and r["careamics"]["mpx_ch_per_s"] > 0
    assert not list(scratch.glob("jd-bench-predict-*")), "the temporary plates were left behind"


def test_train_benchmark_repeats_with_their_own_seeds(tmp_path: Path) -> None:
    r = _run("train.py", "--steps", "1", "--warmup", "1", "--repeats", "2", "--wells", "3", "--fields", "1",
             "--size", "384", "--workers", "0", "--data-batches", "1", "--threads", "2", "--val-maskings", "1",
             tmp_path=tmp_path)
    ours = r["variants"]["default"]
    assert r["seeds"] == 2 and len(r["careamics_val_losses"]) == 2 and len(ours["val_losses"]) == 2
    assert all(v > 0 for v in [*r["careamics_val_losses"], *ours["val_losses"]])
    # another training seed per repeat: another network and other patches, so another validation loss
    assert r["careamics_val_losses"][0] != r["careamics_val_losses"][1]
    assert ours["val_losses"][0] != ours["val_losses"][1]
    assert ours["ratio"] > 0 and r["careamics_patches_per_s"] > 0
    # PSNR against the truth of both networks' output, as it is and with the offset training removes
    for psnrs in (r["careamics_psnr"], r["careamics_psnr_offset_removed"], ours["psnr_equal_time"],
                  ours["psnr_offset_removed_equal_time"]):
        assert len(psnrs) == 2 and all(np.isfinite(psnrs))
