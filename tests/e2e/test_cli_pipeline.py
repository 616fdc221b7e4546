"""The pipeline commands as a user runs them: `jumpdenoise run`, `submit --dry-run`, `status`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jumpdenoise.io.synthetic import generate_plate

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("jumpdenoise"))


def jd(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_run_without_config_runs_the_demo_end_to_end(tmp_path: Path) -> None:
    res = jd("run", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    workdir = tmp_path / "jumpdenoise-demo"
    from jumpdenoise.io.ngff import plate_info, validate_plate

    validate_plate(workdir / "denoised.zarr")
    raw, den = plate_info(workdir / "raw.zarr"), plate_info(workdir / "denoised.zarr")
    assert den.kind == "denoised" and den.channels == raw.channels == ["DNA", "ER", "RNA", "AGP", "Mito"]
    assert den.wells == raw.wells and den.statistics is not None
    report = (workdir / "report.md").read_text()
    assert all(ch in report for ch in raw.channels)
    assert "all stages done" in res.stdout
    assert (workdir / "model" / "checkpoints" / "last.ckpt").is_file()
    # the run folder answers `status`
    st = jd("status", str(workdir), cwd=tmp_path, timeout=120)
    assert st.returncode == 0 and "report" in st.stdout and "all stages done" in st.stdout


def _config(tmp_path: Path, source: Path, **sections) -> Path:
    cfg = {"source": {"path": str(source)}, "paths": {"workdir": str(tmp_path / "run")},
           "convert": {"fields_per_unit": 1}, **sections}  # one field per unit: tests name single-field units
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_failed_local_unit_is_reported_by_run_and_status(tmp_path: Path) -> None:
    source = generate_plate(tmp_path / "source", rows=1, columns=1, fields=2, channels=("DNA",), size=(32, 32),
                            seed=1, ground_truth=False)
    bad = source / "r01c01f02p01-ch1sk1fk1fl1.tiff"
    bad.write_bytes(b"not a tiff")
    cfg = _config(tmp_path, source, executor={"kind": "local", "workers": 1})
    res = jd("run", str(cfg), "--until", "stats", cwd=tmp_path, timeout=300)
    assert res.returncode == 2
    assert "convert: 1 unit(s) failed" in res.stderr and bad.name in res.stderr
    st = jd("status", str(tmp_path / "run"), cwd=tmp_path, timeout=120)
    assert st.returncode == 0, st.stderr
    assert "convert         failed" in st.stdout
    assert "FAILED convert unit A01-1" in st.stdout and bad.name in st.stdout


def test_submit_dry_run_prints_the_plan(tmp_path: Path) -> None:
    source = generate_plate(tmp_path / "source", rows=1, columns=2, fields=1, channels=("DNA",), size=(32, 32),
                            seed=1, ground_truth=False)
    profile = ROOT / "slurm" / "profiles" / "gpu_cluster_example.yaml"
    cfg = _config(tmp_path, source, executor={"kind": "slurm", "profile": str(profile)})
    res = jd("submit", str(cfg), "--dry-run", cwd=tmp_path, timeout=300)
    # the plan, then the example profile's partitions, which the test cluster lacks (unchecked without SLURM)
    lacking = "error: executor.profile.stages.train.partition: no partition 'gpu'"
    assert (res.returncode, lacking in res.stderr) == ((2, True) if shutil.which("sinfo") else (0, False))
    out = res.stdout
    assert "convert: 2 unit(s) in 1 array(s)" in out
    assert "train: 1 unit(s), each ONE job of 2 node(s) x 4 task(s) (one per GPU)" in out
    assert "partition gpu" in out and "4 GPU/node" in out and "account my_lab" in out
    assert "afterok train-finalize" in out
    assert not (tmp_path / "run" / "pipeline_state.json").exists()


def test_status_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    res = jd("status", str(tmp_path), cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "not a pipeline run folder" in res.stderr
