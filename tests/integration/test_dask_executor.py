"""DaskExecutor on a real LocalCluster: outcomes in order, failures isolated, a dying worker,
a bounded window of in-flight units, and make_executor."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dask
import distributed  # noqa: F401 - loads its config defaults before dask.config.set
import pytest

from jumpdenoise.config import ExecutorConfig
from jumpdenoise.errors import ConfigError
from jumpdenoise.executors import make_executor
from jumpdenoise.executors.dask import DaskExecutor, worker_lifetime
from jumpdenoise.executors.local import LocalExecutor
from jumpdenoise.progress import PROGRESS
from jumpdenoise.stages.base import Unit


def square_or_fail(unit: Unit) -> int:
    """Test unit function: fails on key u3, kills its worker process on key die."""
    if unit.key == "u3":
        raise ValueError("unit u3 is bad")
    if unit.key == "die":
        os._exit(13)
    return int(unit.key[1:]) ** 2


def record_in_flight(unit: Unit) -> int:
    """Test unit function: records how many units run at once (marker files in items[0])."""
    folder = Path(unit.items[0])
    mine = folder / unit.key
    mine.touch()
    running = len(list(folder.iterdir()))
    time.sleep(0.05)
    mine.unlink()
    return running


def units(keys) -> list[Unit]:
    return [Unit(stage="test", key=k, items=[]) for k in keys]


def test_outcomes_in_order_failures_isolated_and_dead_worker(caplog):
    caplog.set_level(PROGRESS, logger="jumpdenoise")
    keys = [f"u{i}" for i in range(8)] + ["die"]
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with DaskExecutor(ExecutorConfig(kind="dask", workers=2), dashboard_address=":0") as ex:
            outcomes = ex.map(square_or_fail, units(keys), label="squares")
    assert [o.key for o in outcomes] == keys
    assert [o.value for o in outcomes[:3]] == [0, 1, 4] and outcomes[7].value == 49
    assert not outcomes[3].ok and "unit u3 is bad" in outcomes[3].error
    assert not outcomes[-1].ok and "KilledWorker" in outcomes[-1].error
    assert all(o.ok for i, o in enumerate(outcomes[:-1]) if i != 3)
    assert "Dask dashboard: http://" in caplog.text  # a PROGRESS record of jumpdenoise.executors.dask


def test_window_bounds_units_in_flight(tmp_path):
    cfg = ExecutorConfig(kind="dask", workers=2, threads_per_worker=4, dask_window=1)
    with DaskExecutor(cfg, dashboard_address=":0", quiet=True) as ex:
        outcomes = ex.map(record_in_flight, [Unit(stage="t", key=f"k{i}", items=[str(tmp_path)]) for i in range(16)])
    assert all(o.ok for o in outcomes)
    # 8 worker threads could run 8 units at once; the window (2 workers x 1) allows 2
    assert max(o.value for o in outcomes) <= 2


def test_make_executor_kinds():
    assert isinstance(make_executor(ExecutorConfig(kind="local", workers=3)), LocalExecutor)
    ex = make_executor(ExecutorConfig(kind="dask", workers=1))
    assert isinstance(ex, DaskExecutor) and ex.client is None  # the cluster starts on first use
    bad = ExecutorConfig.model_construct(kind="nope", workers=1)
    with pytest.raises(ConfigError, match="nope"):
        make_executor(bad)


@pytest.mark.parametrize("walltime", [3, 10, 60, 720])
def test_slurm_worker_lifetime_ends_before_walltime(walltime):
    lifetime, stagger = worker_lifetime(walltime)
    assert 1 <= lifetime and lifetime + stagger < walltime


@pytest.mark.slurm
def test_convert_with_dask_workers_as_slurm_jobs(slurm_cluster, tmp_path):
    from jumpdenoise.config import load_config
    from jumpdenoise.io.ngff import done_keys
    from jumpdenoise.io.synthetic import generate_plate
    from jumpdenoise.stages.convert import convert
    from jumpdenoise.stages.verify import verify_plate

    source = generate_plate(tmp_path / "src", plate_name="SLURM", rows=1, columns=2, fields=2, channels=("DNA",),
                            size=(48, 48), seed=1, ground_truth=False, workers=1)
    logs = tmp_path / "logs"
    cfg = load_config(overrides={
        "source": {"path": str(source)}, "paths": {"raw_plate": str(tmp_path / "p.zarr")},
        "executor": {"kind": "dask", "dask_slurm": True, "workers": 1, "dask_interface": "lo",
                     "profile": str(slurm_cluster.profile), "log_dir": str(logs)},
    })
    with DaskExecutor(cfg.executor, dashboard_address=":0") as ex:
        report = convert(cfg, executor=ex)
        script = ex.cluster.job_script()
    assert report.converted == 4 and done_keys(tmp_path / "p.zarr") == {"A01-0", "A01-1", "A02-0", "A02-1"}
    assert verify_plate(cfg.source, tmp_path / "p.zarr").ok
    assert "--lifetime" in script and f"#SBATCH -p {slurm_cluster.partition}" in script
    worker_logs = list(logs.glob("*.err"))
    assert worker_logs and "Start worker" in worker_logs[0].read_text()  # the worker ran as a SLURM job


def test_dashboard_port_in_use_is_replaced_by_a_free_one_quietly(caplog):
    import socket

    caplog.set_level(PROGRESS, logger="jumpdenoise")
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with DaskExecutor(ExecutorConfig(kind="dask", workers=1), dashboard_address=f":{port}",
                          processes=False) as ex:
            link = ex.start().dashboard_link
    err = caplog.text
    assert f":{port}/" not in link and f"Dask dashboard: {link}" in err
    assert "already in use" not in err


def count_opens(name: str, dask_worker) -> None:
    """Test instrumentation on a worker: count the files named ``name`` this process opens from now
    on (a Python audit hook; the count lives on the worker object, read by :func:`opens`)."""
    import sys

    dask_worker.jd_test_opens = {"n": 0}
    if getattr(dask_worker, "jd_test_hooked", False):
        return
    dask_worker.jd_test_hooked = True

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], (str, os.PathLike)) and os.path.basename(args[0]) == name:
            dask_worker.jd_test_opens["n"] += 1

    sys.addaudithook(hook)


def opens(dask_worker) -> int:
    return dask_worker.jd_test_opens["n"]


def chunks(plate: Path) -> dict[str, bytes]:
    """Every chunk file of every level of a plate, by its path in the plate."""
    return {p.relative_to(plate).as_posix(): p.read_bytes() for p in sorted(plate.rglob("*"))
            if p.is_file() and "/c/" in p.as_posix()}


def test_process_workers_load_the_model_once_per_stage_run_not_per_unit(tmp_path):
    """Each Dask worker process holds one session for the stage run (WorkerSessionPlugin): the
    checkpoint is read as often for six units as for one, and the output is the in-process one."""
    from fixtures.models import make_run
    from fixtures.plates import make_plate
    from jumpdenoise.stages.predict import predict

    run = make_run(tmp_path / "run", channels=("DNA", "ER"), depth=2, features=8, steps=2)
    wells = ("A01", "A02", "A03", "B01", "B02", "B03")
    plate = make_plate(tmp_path / "raw.zarr", wells=wells, n_fields=1, shape_yx=(64, 64))
    local = predict(model=run, plate=plate, out=tmp_path / "local.zarr")
    cfg = ExecutorConfig(kind="dask", workers=2, threads_per_worker=1)
    reads = {}
    with DaskExecutor(cfg, dashboard_address=":0", quiet=True) as ex:
        for per_unit in (8, 1):  # one unit of six wells, then six units of one well
            ex.start().run(count_opens, "last.ckpt")
            out = predict(model=run, plate=plate, out=tmp_path / f"dask-{per_unit}.zarr", executor=ex,
                          wells_per_unit=per_unit)
            reads[per_unit] = sum(ex.client.run(opens).values())
            assert chunks(out) == chunks(local)
    # one unit: one worker loads the model; six units on two workers: each loads it once at most
    assert reads[8] > 0 and reads[1] <= 2 * reads[8] < 6 * reads[8]
