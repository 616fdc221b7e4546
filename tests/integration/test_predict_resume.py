"""Predict killed with SIGKILL mid-way, rerun: the same bytes as an uninterrupted run (writer
threads or writer processes; the writer processes end with their killed parent)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jumpdenoise.io.ngff import done_keys
from fixtures.models import make_run
from fixtures.plates import make_plate
from jumpdenoise.stages.predict import predict


def _data_files(plate: Path) -> dict[str, bytes]:
    """Every chunk and metadata file, with the provenance date removed from the root attributes."""
    out = {}
    for p in sorted(plate.rglob("*")):
        rel = p.relative_to(plate).as_posix()
        if not p.is_file() or rel.startswith(".jumpdenoise/done") or rel.endswith(".tmp"):
            continue
        data = p.read_bytes()
        if rel == "zarr.json":
            meta = json.loads(data)
            meta["attributes"]["jumpdenoise"]["provenance"].pop("date")
            data = json.dumps(meta, sort_keys=True).encode()
        out[rel] = data
    return out


SLOW_WRITES = """
import os
if os.environ.get("JD_TEST_SLOW_WRITES"):
    import time
    import jumpdenoise.io.ngff as ngff
    real_write = ngff.write_field
    def slow_write(*a, **k):
        real_write(*a, **k)
        time.sleep(0.3)
    ngff.write_field = slow_write
"""


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def run_and_plate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    run = make_run(root / "run", channels=("DNA", "ER"), depth=2, features=8, steps=4)
    plate = make_plate(root / "raw.zarr", wells=("A01", "A02", "B01", "B02"), n_fields=3,
                       channels=("DNA", "ER"), shape_yx=(128, 128))
    return run, plate


@pytest.mark.slow
@pytest.mark.parametrize("write_processes", [0, 2])
def test_resume_after_sigkill_is_byte_identical(tmp_path: Path, run_and_plate: tuple[Path, Path],
                                                 write_processes: int) -> None:
    run, plate = run_and_plate
    settings = {"wells_per_unit": 1, "io_threads": 2, "write_processes": write_processes}
    out = tmp_path / "den.zarr"
    # The killed run (and its writer processes: a sitecustomize they all load) is slowed down
    # after each field's data are written (before its marker), so that SIGKILL lands
    # mid-plate, often between a field's data and its marker.
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SLOW_WRITES)
    env = {**os.environ, "JD_TEST_SLOW_WRITES": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    script = (f"from jumpdenoise.stages.predict import predict\n"
              f"predict(model={str(run)!r}, plate={str(plate)!r}, out={str(out)!r}, **{settings!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            children.update(_children(proc.pid))
            if out.is_dir() and len(done_keys(out)) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"predict ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        children.update(_children(proc.pid))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    if write_processes:
        assert len(children) >= write_processes  # the writers (and multiprocessing's resource tracker)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.1)
    assert not any(_alive(c) for c in children), "writer processes outlived their killed parent"
    killed_at = len(done_keys(out))
    assert 0 < killed_at < 12
    predict(model=run, plate=plate, out=out, **settings)  # resumes
    assert len(done_keys(out)) == 12
    reference = predict(model=run, plate=plate, out=tmp_path / "reference.zarr", **{**settings, "write_processes": 0})
    got, want = _data_files(out), _data_files(reference)
    assert sorted(got) == sorted(want)
    different = [k for k in want if got[k] != want[k]]
    assert not different, f"files differ after resume: {different[:10]}"
