"""Dask on a compute node: the ``ssh -L`` tunnel line also for a LocalCluster started inside a SLURM
job, and no cluster started for a stage whose inputs fail their checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jumpdenoise.config import ExecutorConfig, load_config
from jumpdenoise.driver import run_stage
from jumpdenoise.errors import JumpDenoiseError
from jumpdenoise.executors.dask import DaskExecutor, on_compute_node, tunnel_line
from jumpdenoise.io.synthetic import generate_plate
from jumpdenoise.stages.base import CONVERT

LOCAL = ExecutorConfig(kind="dask", workers=1)


def test_tunnel_line_for_a_local_cluster_only_on_a_compute_node(monkeypatch) -> None:
    link = "http://10.0.0.7:8787/status"
    for var in ("SLURM_JOB_ID", "SLURM_SUBMIT_HOST"):
        monkeypatch.delenv(var, raising=False)
    assert not on_compute_node() and tunnel_line(link, LOCAL) is None
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert on_compute_node()
    assert tunnel_line(link, LOCAL) == ("from your laptop: ssh -L 8787:10.0.0.7:8787 <login-node>, "
                                        "then open http://localhost:8787/status")
    # a dashboard link on the loopback names the node itself
    assert f"ssh -L 8787:{socket.gethostname()}:8787" in tunnel_line("http://127.0.0.1:8787/status", LOCAL)
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("SLURM_SUBMIT_HOST", "login01.cluster")
    assert on_compute_node() == (socket.gethostname().split(".")[0] != "login01")


def test_warm_up_starts_no_cluster_and_runs_on_the_workers_once_started() -> None:
    ex = DaskExecutor(LOCAL, dashboard_address=":0", quiet=True, processes=False)
    try:
        ex.warm_up(lambda: os.environ.setdefault("JUMPDENOISE_WARMED", "yes"))
        assert ex.client is None and ex.cluster is None
        client = ex.start()
        assert set(client.run(lambda: os.environ.get("JUMPDENOISE_WARMED")).values()) == {"yes"}
    finally:
        ex.close()
        os.environ.pop("JUMPDENOISE_WARMED", None)


def test_no_cluster_for_a_stage_whose_source_is_missing(tmp_path: Path, capfd) -> None:
    cfg = load_config(overrides={"source": {"path": str(tmp_path / "no-such-source")},
                                 "paths": {"workdir": str(tmp_path / "run")},
                                 "executor": {"kind": "dask", "workers": 1}})
    ex = DaskExecutor(cfg.executor, dashboard_address=":0")
    with pytest.raises(JumpDenoiseError, match="no-such-source"):
        run_stage(CONVERT, cfg, executor=ex)
    assert ex.client is None and ex.cluster is None
    assert "Dask dashboard" not in capfd.readouterr().err


@pytest.mark.slurm
def test_convert_in_a_slurm_job_prints_the_tunnel_line(slurm_cluster, tmp_path: Path) -> None:
    source = generate_plate(tmp_path / "src", plate_name="NODE", rows=1, columns=1, fields=2, channels=("DNA",),
                            size=(32, 32), seed=2, ground_truth=False, workers=1)
    cmd = ["srun", "-p", slurm_cluster.partition, "-n", "1", "-c", "1", "--mem=1G", "-t", "5",
           sys.executable, "-c", "from jumpdenoise.cli import main; main()",
           "convert", str(source), str(tmp_path / "raw.zarr"), "--executor", "dask", "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fields: 2 converted" in run.stdout
    dashboard = next(ln for ln in run.stderr.splitlines() if ln.startswith("Dask dashboard: http://"))
    port = dashboard.rsplit(":", 1)[1].split("/")[0]
    assert f"from your laptop: ssh -L {port}:" in run.stderr and f"http://localhost:{port}/status" in run.stderr
