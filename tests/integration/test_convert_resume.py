"""Resume after SIGKILL: `jumpdenoise convert` killed at several moments, then rerun, gives a
plate byte-identical to an uninterrupted conversion (arrays, metadata, statistics)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plate_files import tree_bytes

from jumpdenoise.config import load_config
from jumpdenoise.io.ngff import done_keys, plate_info
from jumpdenoise.io.synthetic import generate_plate
from jumpdenoise.stages.convert import convert

CLI = [sys.executable, "-c", "from jumpdenoise.cli import main; main()"]


def start(source: Path, out: Path, executor: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "convert", str(source), str(out), "--executor", executor, "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the convert process, then anything it started (its session), and reap it."""
    os.kill(proc.pid, signal.SIGKILL)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate(timeout=30)


def wait_for(proc: subprocess.Popen, predicate, timeout: float = 120.0) -> bool:
    """Poll until ``predicate()`` or the process ends; True if the predicate held first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise TimeoutError("convert neither progressed nor ended")


@pytest.mark.parametrize("executor", ["local", pytest.param("dask", marks=pytest.mark.slow)])
def test_sigkill_then_rerun_gives_identical_plate(tmp_path, executor):
    source = generate_plate(tmp_path / "src", plate_name="KILL", rows=3, columns=4, fields=2,
                            channels=("DNA", "ER", "RNA", "Mito"), size=(192, 192), seed=5,
                            ground_truth=False, workers=1)
    n_fields = 24
    reference = tmp_path / "reference.zarr"
    convert(load_config(overrides={"source": {"path": str(source)}, "paths": {"raw_plate": str(reference)},
                                   "executor": {"kind": "local", "workers": 1}}))

    out = tmp_path / "killed.zarr"
    kills_mid_conversion = 0
    # 1) kill early: before or while the metadata are prepared
    proc = start(source, out, executor)
    wait_for(proc, lambda: (out.parent / f".{out.name}.preparing").exists() or out.exists(), timeout=60)
    kill(proc)
    # 2) kill after some fields are done, a few times, each time resuming further
    for _ in range(2):
        before = len(done_keys(out)) if out.exists() else 0
        proc = start(source, out, executor)
        progressed = wait_for(proc, lambda: out.exists() and len(done_keys(out)) > before)
        if not progressed:  # finished before we could kill it
            assert proc.wait() == 0, proc.communicate()[0].decode()
            break
        kill(proc)
        if len(done_keys(out)) < n_fields:
            kills_mid_conversion += 1
    assert kills_mid_conversion >= 1, "the conversion was never killed mid-way; the test proves nothing"
    # 3) rerun to completion
    final = subprocess.run([*CLI, "convert", str(source), str(out), "--executor", executor, "--workers", "2"],
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "already done (skipped)" in final.stdout

    assert done_keys(out) == done_keys(reference)
    got, want = tree_bytes(out), tree_bytes(reference)
    assert sorted(got) == sorted(want)
    differing = [k for k in want if got[k] != want[k]]
    assert not differing, f"files differ from an uninterrupted conversion: {differing[:5]}"
    assert plate_info(out).statistics == plate_info(reference).statistics
    assert (out / ".jumpdenoise" / "statistics.csv").read_bytes() == \
        (reference / ".jumpdenoise" / "statistics.csv").read_bytes()
    assert not list((out / ".jumpdenoise" / "done").glob(".*.tmp"))  # temporaries of killed runs removed


def test_temporaries_of_a_killed_run_are_removed_on_resume(tmp_path):
    """A run killed inside a write leaves a chunk's ``*.partial`` and a marker's ``.KEY.*.tmp``
    (as zarr's LocalStore and mark_done name them): the rerun removes both."""
    source = generate_plate(tmp_path / "src", plate_name="TMP", rows=1, columns=2, fields=2, channels=("DNA", "ER"),
                            size=(40, 48), seed=3, ground_truth=False, workers=1)
    cfg = load_config(overrides={"source": {"path": str(source)}, "paths": {"raw_plate": str(tmp_path / "p.zarr")},
                                 "executor": {"kind": "local", "workers": 1}})
    out = tmp_path / "p.zarr"
    convert(cfg)
    want = tree_bytes(out)
    info = plate_info(out)
    chunk_dir = out / info.image_path("A02", 1) / "0" / "c" / "1" / "0"
    stale_chunk = chunk_dir / "0.0123456789abcdef0123456789abcdef.partial"
    stale_chunk.write_bytes(b"half a chunk")
    stale_marker = out / ".jumpdenoise" / "done" / ".A02-1.k1ll3d.tmp"
    stale_marker.write_bytes(b"half a marker")
    (out / ".jumpdenoise" / "done" / "A02-1.npz").unlink()  # the field the killed run was writing
    report = convert(cfg)
    assert (report.converted, report.skipped) == (1, 3)
    assert not stale_chunk.exists() and not stale_marker.exists()
    assert tree_bytes(out) == want
