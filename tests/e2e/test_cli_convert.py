"""The plate commands as a user runs them: convert, verify, demo (real subprocesses, exit codes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from jumpdenoise.io.ngff import done_keys, plate_info, validate_plate
from jumpdenoise.io.synthetic import generate_plate

CLI = [sys.executable, "-c", "from jumpdenoise.cli import main; main()"]


def jd(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``jumpdenoise ARGS`` and return the finished process (text output)."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def plate_source(tmp_path_factory) -> Path:
    """A generated Phenix-layout plate: 2 x 2 wells, 2 fields, 2 channels, 64 px."""
    return generate_plate(tmp_path_factory.mktemp("cli_src"), plate_name="CLI", rows=2, columns=2, fields=2,
                          channels=("DNA", "Mito"), size=(64, 64), seed=3, ground_truth=False, workers=1)


def test_convert_with_dask_then_verify_then_refuse_existing(plate_source, tmp_path):
    out = tmp_path / "plate.zarr"
    run = jd("convert", plate_source, out, "--workers", "2")  # default: a Dask LocalCluster
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Dask dashboard: http://" in run.stderr
    assert "fields: 8 converted, 0 already done (skipped), 0 unit(s) failed, of 8" in run.stdout
    assert "MB/s" in run.stdout
    validate_plate(out)
    assert plate_info(out).statistics is not None

    run = jd("verify", plate_source, out, "--workers", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "8 field(s) compared, all pixels identical" in run.stdout

    arr = zarr.open_array(out / "A" / "2" / "0" / "0", mode="r+")
    arr[0, :2, :] = 0
    run = jd("verify", plate_source, out)
    assert run.returncode == 1
    assert "1 difference(s)" in run.stdout and "A02-0 DNA:" in run.stdout and "pixels differ from" in run.stdout

    # another source into the same output: refused without --overwrite, accepted with it
    other = generate_plate(tmp_path / "other", plate_name="OTHER", rows=1, columns=1, fields=1,
                           channels=("DNA",), size=(32, 32), seed=1, ground_truth=False, workers=1)
    run = jd("convert", other, out, "--executor", "local", "--workers", "1")
    assert run.returncode != 0
    assert "already exists" in run.stderr and str(out) in run.stderr and "--overwrite" in run.stderr
    run = jd("convert", other, out, "--executor", "local", "--workers", "1", "--overwrite")
    assert run.returncode == 0, run.stdout + run.stderr
    assert plate_info(out).n_fields == 1


def test_convert_bad_tiff_exits_nonzero_listing_it(tmp_path):
    src = generate_plate(tmp_path / "src", plate_name="BADCLI", rows=1, columns=2, fields=2, channels=("DNA",),
                         size=(64, 64), seed=4, ground_truth=False, workers=1)
    bad = src / "r01c02f02p01-ch1sk1fk1fl1.tiff"
    data = bad.read_bytes()
    bad.chmod(0o644)
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "bad.zarr"
    run = jd("convert", src, out, "--executor", "local", "--workers", "2")
    assert run.returncode != 0
    assert "1 unit(s) failed" in run.stderr and "A02-1" in run.stderr and bad.name in run.stderr
    assert "truncated" in run.stderr
    assert done_keys(out) == {"A01-0", "A01-1", "A02-0"}


def test_demo_runs_end_to_end(tmp_path):
    run = jd("demo", tmp_path / "demo", "--workers", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    plate = tmp_path / "demo" / "raw.zarr"
    assert f"OME-Zarr plate:" in run.stdout and str(plate) in run.stdout
    assert "statistics.csv" in run.stdout
    validate_plate(plate)
    info = plate_info(plate)
    assert info.channels == ["DNA", "ER", "RNA", "AGP", "Mito"] and info.n_fields == 12
    assert all(np.isfinite(info.statistics["plate"][ch]["mean"]) for ch in info.channels)
    assert (plate / ".jumpdenoise" / "statistics.csv").is_file()
