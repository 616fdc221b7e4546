"""SLURM / DDP launch checks fail fast, naming what to change."""

from __future__ import annotations

import pytest

from jumpdenoise.config.train import TrainerSettings
from jumpdenoise.errors import ClusterError
from jumpdenoise.train.loop import check_cluster
from jumpdenoise.train.run_folder import is_global_zero


@pytest.fixture
def slurm(monkeypatch: pytest.MonkeyPatch):
    for var in ("SUBMITIT_EXECUTOR", "SUBMITIT_FOLDER", "TORCHELASTIC_RUN_ID", "SLURM_TASKS_PER_NODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    monkeypatch.setenv("SLURM_NNODES", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    return monkeypatch


def test_outside_slurm_settings_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    assert check_cluster(TrainerSettings(devices=3, num_nodes=1)) == (3, 1, [])


def test_tasks_per_node_must_equal_devices(slurm) -> None:
    with pytest.raises(ClusterError, match=r"2 task\(s\) per node.*devices is 4.*--ntasks-per-node=4"):
        check_cluster(TrainerSettings(devices=4, num_nodes=2))
    with pytest.raises(ClusterError, match=r"2 node\(s\).*num_nodes is 1.*--nodes=1"):
        check_cluster(TrainerSettings(devices=2, num_nodes=1))
    devices, nodes, plugins = check_cluster(TrainerSettings(devices="auto", num_nodes=2))
    assert (devices, nodes, plugins) == (2, 2, [])


def test_torchrun_inside_slurm_is_refused(slurm) -> None:
    slurm.setenv("TORCHELASTIC_RUN_ID", "x")
    with pytest.raises(ClusterError, match="torchrun"):
        check_cluster(TrainerSettings(devices=2, num_nodes=2))


def test_submitit_disables_lightning_requeue(slurm) -> None:
    slurm.setenv("SUBMITIT_EXECUTOR", "slurm")
    _, _, plugins = check_cluster(TrainerSettings(devices=2, num_nodes=2))
    assert len(plugins) == 1 and plugins[0].auto_requeue is False


def test_global_zero_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "SLURM_PROCID", "PMI_RANK", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert is_global_zero()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not is_global_zero()
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert is_global_zero()
