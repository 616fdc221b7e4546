"""SlurmExecutor against the real single-node SLURM test cluster (never mocked)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from jumpdenoise.config import ExecutorConfig, load_profile
from jumpdenoise.executors import make_executor
from jumpdenoise.executors.slurm import SlurmExecutor, base_id, poll_states
from jumpdenoise.stages.base import Unit

pytestmark = pytest.mark.slurm
# jobs unpickle these test functions where the test module is not importable: send them by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square_or_fail(unit: Unit) -> dict:
    """A unit function: squares the number in the key; keys starting with 'bad' fail."""
    if unit.key.startswith("bad"):
        raise ValueError(f"unit {unit.key} cannot be processed (planted failure)")
    n = int(unit.key.split("-")[1])
    return {"key": unit.key, "square": n * n}


def write_then_maybe_fail(path: str, text: str, fail: bool) -> str:
    """Write ``text`` to ``path`` (the child reads it), then fail when asked."""
    Path(path).write_text(text)
    if fail:
        raise RuntimeError("parent failed on purpose")
    return text


def read_file(path: str) -> str:
    return Path(path).read_text()


def sleep_then_return(seconds: float, value: str) -> str:
    time.sleep(seconds)
    return value


class CountAttempts:
    """First call: record the attempt and sleep (to be interrupted); later calls: return the count."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> int:
        p = Path(self.path)
        attempts = int(p.read_text()) + 1 if p.exists() else 1
        p.write_text(str(attempts))
        if attempts == 1:
            time.sleep(300)
        return attempts


def units(*keys: str) -> list[Unit]:
    return [Unit(stage="test", key=k, items=[k]) for k in keys]


@pytest.fixture()
def executor(slurm_cluster, tmp_path: Path) -> SlurmExecutor:
    profile = load_profile(slurm_cluster.profile).model_copy(update={"time_min": 2, "poll_s": 1})
    return SlurmExecutor(profile, tmp_path / "logs")


def wait_state(job_id: str, wanted: set[str], timeout: float = 60) -> str:
    end = time.monotonic() + timeout
    state = "UNKNOWN"
    while time.monotonic() < end:
        state = poll_states([job_id]).get(job_id, "UNKNOWN")
        if state in wanted:
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {state} after {timeout} s (wanted {wanted})")


def test_array_returns_results_and_reports_failing_unit_with_log(executor: SlurmExecutor) -> None:
    outcomes = executor.map(square_or_fail, units("u-2", "bad-1", "u-3"), label="squares")
    assert [o.key for o in outcomes] == ["u-2", "bad-1", "u-3"]
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[0].value == {"key": "u-2", "square": 4}
    assert outcomes[2].value == {"key": "u-3", "square": 9}
    # one array: tasks share the array id
    assert len({base_id(o.extra["job_id"]) for o in outcomes}) == 1
    bad = outcomes[1]
    assert "planted failure" in bad.error
    assert bad.log is not None and Path(bad.log).is_file()
    assert "planted failure" in Path(bad.log).read_text()


def test_make_executor_builds_slurm_executor(slurm_cluster, tmp_path: Path) -> None:
    ex = make_executor(ExecutorConfig(kind="slurm", profile=slurm_cluster.profile, log_dir=tmp_path / "logs"))
    assert isinstance(ex, SlurmExecutor)
    assert ex.profile.partition == slurm_cluster.partition
    assert ex.log_dir == (tmp_path / "logs").absolute()


def test_arrays_are_split_at_max_array_size(executor: SlurmExecutor) -> None:
    executor.profile = executor.profile.model_copy(update={"max_array_size": 2})
    keys = [f"u-{i}" for i in range(5)]
    outcomes = executor.map(square_or_fail, units(*keys), label="split")
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert [o.value["square"] for o in outcomes] == [i * i for i in range(5)]
    arrays = [base_id(o.extra["job_id"]) for o in outcomes]
    assert len(set(arrays)) == 3  # 2 + 2 + 1
    assert arrays[0] == arrays[1] != arrays[2] == arrays[3] != arrays[4]


def test_afterok_chain_runs_child_after_parent(executor: SlurmExecutor, tmp_path: Path) -> None:
    shared = tmp_path / "message.txt"
    parent = executor.submit_one(write_then_maybe_fail, str(shared), "from parent", False, name="parent")
    child = executor.submit_one(read_file, str(shared), name="child", dependency=[parent.job_id])
    outs = executor.wait([parent, child], ["parent", "child"])
    assert [o.ok for o in outs] == [True, True]
    assert outs[1].value == "from parent"


def test_failed_parent_cancels_children(executor: SlurmExecutor, tmp_path: Path) -> None:
    parent = executor.submit_one(write_then_maybe_fail, str(tmp_path / "x"), "x", True, name="bad-parent")
    children = executor.submit_stage(square_or_fail, units("u-1", "u-2"), name="children",
                                     dependency=[parent.job_id])
    outs = executor.wait([parent, *children], ["parent", "u-1", "u-2"])
    assert not any(o.ok for o in outs)
    assert "parent failed on purpose" in outs[0].error
    # kill_invalid_depend: the children never ran and were cancelled
    assert {o.extra["state"] for o in outs[1:]} == {"CANCELLED"}
    assert not any(Path(o.log).exists() for o in outs[1:])


def test_cancelled_job_fails_and_resubmitted_job_completes(executor: SlurmExecutor) -> None:
    job = executor.submit_one(sleep_then_return, 120, "late", name="to-cancel")
    wait_state(job.job_id, {"RUNNING"})
    subprocess.run(["scancel", job.job_id], check=True)
    (out,) = executor.wait([job], ["sleeper"])
    assert not out.ok
    assert out.extra["state"] == "CANCELLED"
    assert "CANCELLED" in out.error
    again = executor.submit_one(sleep_then_return, 0, "done", name="resubmitted")
    (out2,) = executor.wait([again], ["sleeper"])
    assert out2.ok and out2.value == "done"


@pytest.mark.slow
def test_checkpointable_job_is_requeued_after_time_limit(executor: SlurmExecutor, tmp_path: Path) -> None:
    counter = tmp_path / "attempts.txt"
    job = executor.submit_distributed(CountAttempts(str(counter)), name="requeue")
    end = time.monotonic() + 60
    while not counter.exists() and time.monotonic() < end:
        time.sleep(0.5)
    assert counter.read_text() == "1"
    job._interrupt(timeout=True)  # what SLURM sends before the time limit
    (out,) = executor.wait([job], ["train"])
    assert out.ok, out.error
    assert out.value == 2  # it ran a second time, after the requeue


def rank_and_size() -> tuple[int, int]:
    """What srun tells each task of a multi-task job."""
    import os

    return int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])


def test_distributed_job_starts_one_process_per_task_with_srun(executor: SlurmExecutor) -> None:
    executor.profile = executor.profile.model_copy(update={"tasks_per_node": 2, "stages": {}})
    job = executor.submit_distributed(rank_and_size, name="ddp", stage=None)
    (out,) = executor.wait([job], ["train"])
    assert out.ok, out.error
    assert out.value == (0, 2)  # task 0's result; both tasks ran in the same job
    assert [t.result() for t in (job.task(0), job.task(1))] == [(0, 2), (1, 2)]
