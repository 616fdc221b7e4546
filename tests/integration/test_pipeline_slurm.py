"""The pipeline on the real single-node SLURM test cluster (never mocked).

Small generated plates (Phenix layout) go through submitit jobs chained with afterok:
a corrupted TIFF fails its unit, `status` names the unit, its log and its error, and the
rest of the chain is cancelled; resubmitting after the fix runs only the failed unit;
cancelled runs resume; the full pipeline ends in a denoised plate that validates and
equals the one of a local run with the same config and seed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from jumpdenoise.config import JumpDenoiseConfig, load_config
from jumpdenoise.errors import ClusterError
from jumpdenoise.io.synthetic import generate_plate
from jumpdenoise.pipeline_slurm import submit_pipeline
from jumpdenoise.run_state import RunState, cancel_run, collect_status, format_status

pytestmark = pytest.mark.slurm

PLATE = dict(rows=1, columns=2, fields=2, channels=("DNA", "Mito"), size=(64, 64), seed=3, ground_truth=False)


def small_config(source: Path, workdir: Path, profile: Path, **extra) -> JumpDenoiseConfig:
    over = {"source": {"path": str(source)}, "paths": {"workdir": str(workdir)},
            "convert": {"fields_per_unit": 1},  # one field per unit: the tests name single-field units
            "executor": {"kind": "slurm", "profile": str(profile)}}
    over.update(extra)
    return load_config(overrides=over)


def wait_run(workdir: Path, timeout: float = 300):
    """Poll the run until none of its jobs is queued or running; return its status."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = collect_status(workdir)
        if not status.active_jobs:
            return status
        time.sleep(2)
    raise AssertionError(f"run {workdir} still has jobs after {timeout} s:\n{format_status(collect_status(workdir))}")


def stage(status, name: str):
    return next(s for s in status.stages if s.name == name)


@pytest.fixture()
def plate_source(tmp_path: Path) -> Path:
    return generate_plate(tmp_path / "source", **PLATE)


def test_dry_run_prints_the_plan_and_submits_nothing(slurm_cluster, plate_source: Path, tmp_path: Path) -> None:
    cfg = small_config(plate_source, tmp_path / "run", slurm_cluster.profile)
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    lines: list[str] = []
    assert submit_pipeline(cfg, dry_run=True, echo=lines.append) == {}
    text = "\n".join(lines)
    for name in ("convert", "stats", "train", "predict", "stats_denoised", "report"):
        assert f"- {name} (" in text
    assert "convert: 4 unit(s) in 1 array(s)" in text  # 2 wells x 2 fields, one field per unit
    assert "afterok convert-finalize" in text and "afterok stats_denoised-finalize" in text
    assert "partition debug" in text and "1 GB" in text
    assert "one per GPU" in text  # training: one multi-task job
    assert "nothing submitted" in text
    assert not (tmp_path / "run" / "pipeline_state.json").exists()
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    assert set(after.split()) <= set(before.split())


def test_failed_unit_is_shown_with_its_log_and_resubmit_runs_only_it(slurm_cluster, plate_source: Path,
                                                                     tmp_path: Path) -> None:
    bad = sorted(plate_source.glob("r01c02f02p01-ch2*.tiff"))[0]  # well A02, field index 1, Mito
    good_copy = tmp_path / "good.tiff"
    shutil.copy(bad, good_copy)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])  # truncated TIFF
    workdir = tmp_path / "run"
    cfg = small_config(plate_source, workdir, slurm_cluster.profile)

    jobs = submit_pipeline(cfg, until="stats", echo=lambda s: None)
    assert set(jobs) == {"convert", "stats"}
    status = wait_run(workdir)
    convert, stats = stage(status, "convert"), stage(status, "stats")
    assert convert.state == "failed"
    assert convert.count("done") == 3 and [u.key for u in convert.failed] == ["A02-1"]
    failed = convert.failed[0]
    assert failed.log and Path(failed.log).is_file()
    assert bad.name in failed.error and bad.name in Path(failed.log).read_text()
    assert stats.state == "cancelled"  # kill_invalid_depend: the chain stops at the failure
    text = format_status(status)
    assert "FAILED convert unit A02-1" in text and f"log: {failed.log}" in text and bad.name in text

    shutil.copy(good_copy, bad)  # fix the source, submit again: only the failed field runs
    submit_pipeline(cfg, until="stats", echo=lambda s: None)
    status = wait_run(workdir)
    assert [s.state for s in status.stages] == ["done", "done"], format_status(status)
    plan = RunState(workdir.absolute()).plan("convert")
    assert [u["key"] for u in plan["units"]] == ["A02-1"]
    from jumpdenoise.io.ngff import plate_info, validate_plate

    validate_plate(cfg.paths.raw_plate)
    assert plate_info(cfg.paths.raw_plate).statistics["plate"]["Mito"]["count"] == 4 * 64 * 64


def test_cancelled_run_resumes_when_submitted_again(slurm_cluster, plate_source: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    cfg = small_config(plate_source, workdir, slurm_cluster.profile)
    jobs = submit_pipeline(cfg, until="stats", echo=lambda s: None)
    with pytest.raises(ClusterError, match="still queued or running"):
        submit_pipeline(cfg, until="stats", echo=lambda s: None)
    cancelled = cancel_run(workdir)
    assert jobs["stats"]["finalize"] in cancelled
    status = wait_run(workdir, timeout=60)
    assert not status.done and stage(status, "stats").state == "cancelled"
    assert not RunState(workdir.absolute()).is_done("stats")
    submit_pipeline(cfg, until="stats", echo=lambda s: None)
    status = wait_run(workdir)
    assert status.done, format_status(status)


TINY_TRAIN = {"seed": 7, "epochs": 1, "patch_size": 32, "batch_size": 4, "patches_per_epoch": 16, "n_val_patches": 4,
              "model": {"depth": 2, "num_channels_init": 8},
              "trainer": {"accelerator": "cpu", "devices": 1, "num_workers": 0, "enable_progress_bar": False}}
# the tiny training makes the plate worse: these tests are about the plumbing, so predict anyway
# (tests/integration/test_pipeline_guard.py checks that a pipeline stops without allow_worse)
CPU_PREDICT = {"device": "cpu", "allow_worse": True, "experimental": {"wells_per_unit": 1}}


@pytest.mark.slow
def test_full_pipeline_on_slurm_gives_a_valid_denoised_plate_equal_to_a_local_run(
        slurm_cluster, plate_source: Path, tmp_path: Path) -> None:
    from jumpdenoise.io.ngff import plate_info, read_field, validate_plate
    from jumpdenoise.pipeline import run_pipeline

    workdir = tmp_path / "slurm-run"
    cfg = small_config(plate_source, workdir, slurm_cluster.profile, train=TINY_TRAIN, predict=CPU_PREDICT)
    jobs = submit_pipeline(cfg, echo=lambda s: None)
    assert list(jobs) == ["convert", "stats", "train", "predict", "stats_denoised", "report"]
    status = wait_run(workdir, timeout=900)
    assert status.done, format_status(status)
    assert stage(status, "predict").count("done") == 2  # one array task per well
    denoised = Path(cfg.paths.denoised_plate)
    validate_plate(denoised)
    info = plate_info(denoised)
    assert info.kind == "denoised" and info.channels == ["DNA", "Mito"] and info.statistics is not None
    assert "Mito" in (workdir / "report.md").read_text()

    local_cfg = load_config(overrides={"source": {"path": str(plate_source)},
                                       "paths": {"workdir": str(tmp_path / "local-run")},
                                       "train": TINY_TRAIN, "predict": CPU_PREDICT,
                                       "executor": {"kind": "local", "workers": 1}})
    run_pipeline(local_cfg, echo=lambda s: None)
    for well, fields in info.wells.items():
        for f in fields:
            a = read_field(denoised, well, f)
            b = read_field(local_cfg.paths.denoised_plate, well, f)
            assert a.dtype == b.dtype and np.array_equal(a, b), f"{well}/{f} differs between SLURM and local"


def test_convert_through_dask_jobqueue_workers_writes_the_dashboard_link(slurm_cluster, plate_source: Path,
                                                                         tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    cfg = small_config(plate_source, workdir, slurm_cluster.profile)
    cfg = cfg.model_copy(update={"executor": cfg.executor.model_copy(update={
        "kind": "dask", "dask_slurm": True, "workers": 1, "dask_interface": "lo", "log_dir": tmp_path / "dask-logs"})})
    submit_pipeline(cfg, until="convert", echo=lambda s: None)
    status = wait_run(workdir)
    assert status.done, format_status(status)
    assert stage(status, "convert").count("done") == 4
    dashboard = (workdir / "dask_dashboard.txt").read_text()
    assert "Dask dashboard: http://" in dashboard and "ssh -N -L" in dashboard and "SLURM job" in dashboard
    assert list((tmp_path / "dask-logs").glob("*.err")), "no dask-jobqueue worker job ran"


@pytest.mark.slow
def test_training_is_one_job_of_two_srun_tasks_running_ddp(slurm_cluster, plate_source: Path, tmp_path: Path) -> None:
    from jumpdenoise.config import SlurmProfile, load_profile

    data = load_profile(slurm_cluster.profile).model_dump()
    data["stages"]["train"].update(tasks_per_node=2, mem_gb=2)
    profile = SlurmProfile.model_validate(data)
    ddp_train = {**TINY_TRAIN, "trainer": {**TINY_TRAIN["trainer"], "devices": 2, "strategy": "ddp"}}
    workdir = tmp_path / "run"
    cfg = small_config(plate_source, workdir, slurm_cluster.profile, train=ddp_train)
    cfg = cfg.model_copy(update={"executor": cfg.executor.model_copy(update={"profile": profile})})
    submit_pipeline(cfg, until="train", echo=lambda s: None)
    status = wait_run(workdir, timeout=600)
    assert status.done, format_status(status)
    train = stage(status, "train")
    (job_id,) = [j for j in train.jobs if j not in RunState(workdir.absolute()).state()["jobs"]["train"].values()]
    logs = workdir / ".pipeline" / "logs"
    # submitit's line in each task's log: two processes (global ranks 0 and 1 of 2) in ONE job
    ranks = sorted(ln.split("global_rank=")[1].split(")")[0] + ")" for t in (0, 1)
                   for ln in (logs / f"{job_id}_{t}_log.out").read_text().splitlines() if "global_rank=" in ln)
    assert ranks == ["0(2)", "1(2)"]
    assert (Path(cfg.paths.run_dir) / "checkpoints" / "last.ckpt").is_file()
