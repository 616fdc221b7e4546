"""Fixtures of the integration tests: the real single-node SLURM test cluster.

``slurm_cluster`` checks that ``sinfo`` sees an available node and that ``sacct`` answers
(accounting through slurmdbd: without it submitit cannot tell job states). When the cluster
is not up, the test is skipped on a developer machine, and FAILS in CI (``CI=true``): CI
starts the cluster with ``slurm/install_test_cluster.sh && slurm/start_test_cluster.sh``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_PROFILE = ROOT / "slurm" / "profiles" / "test_cluster.yaml"


@dataclass(frozen=True)
class SlurmCluster:
    """What the tests know of the running test cluster."""

    partition: str
    node: str
    cpus: int
    profile: Path


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout


def _cluster_problem() -> tuple[str | None, SlurmCluster | None]:
    for tool in ("sinfo", "sbatch", "sacct", "scancel"):
        if shutil.which(tool) is None:
            return f"{tool} not found (run slurm/install_test_cluster.sh)", None
    try:
        lines = _run(["sinfo", "-h", "-N", "-o", "%N|%P|%T|%c"]).split()
    except (subprocess.SubprocessError, OSError) as exc:
        return f"sinfo fails: {exc} (run slurm/start_test_cluster.sh)", None
    usable = {"idle", "mixed", "allocated", "completing"}
    ready = [ln.split("|") for ln in lines if ln.split("|")[2].rstrip("*") in usable]
    if not ready:
        return f"no available SLURM node (sinfo: {lines})", None
    try:
        _run(["sacct", "-n", "-X", "--starttime=now-1minute"])
    except (subprocess.SubprocessError, OSError) as exc:
        return f"sacct fails (slurmdbd down?): {exc}", None
    node, partition, _, cpus = ready[0]
    return None, SlurmCluster(partition.rstrip("*"), node, int(cpus), TEST_PROFILE)


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The running test cluster; skip (locally) or fail (CI) when it is not up."""
    problem, cluster = _cluster_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"SLURM test cluster not available in CI: {problem}")
        pytest.skip(f"SLURM test cluster not available: {problem}")
    assert cluster is not None
    return cluster
