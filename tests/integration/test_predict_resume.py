"""Predict killed with SIGKILL mid-way, rerun: the same bytes as an uninterrupted run."""

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
from jumpdenoise.predict.testing import make_plate, make_run
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


@pytest.mark.slow
def test_resume_after_sigkill_is_byte_identical(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", channels=("DNA", "ER"), depth=2, features=8, steps=4)
    plate = make_plate(tmp_path / "raw.zarr", wells=("A01", "A02", "B01", "B02"), n_fields=3,
                       channels=("DNA", "ER"), shape_yx=(128, 128))
    settings = {"wells_per_unit": 1, "io_threads": 2}
    out = tmp_path / "den.zarr"
    # The killed run is slowed down after each field's data are written (before its marker),
    # so that SIGKILL lands mid-plate, often between a field's data and its marker.
    script = (f"import time\n"
              f"import jumpdenoise.io.ngff as ngff\n"
              f"real_write = ngff.write_field\n"
              f"def slow_write(*a, **k):\n"
              f"    real_write(*a, **k)\n"
              f"    time.sleep(0.3)\n"
              f"ngff.write_field = slow_write\n"
              f"from jumpdenoise.stages.predict import predict\n"
              f"predict(model={str(run)!r}, plate={str(plate)!r}, out={str(out)!r}, **{settings!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_dir() and len(done_keys(out)) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"predict ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = len(done_keys(out))
    assert 0 < killed_at < 12
    predict(model=run, plate=plate, out=out, **settings)  # resumes
    assert len(done_keys(out)) == 12
    reference = predict(model=run, plate=plate, out=tmp_path / "reference.zarr", **settings)
    got, want = _data_files(out), _data_files(reference)
    assert sorted(got) == sorted(want)
    different = [k for k in want if got[k] != want[k]]
    assert not different, f"files differ after resume: {different[:10]}"
