"""Output safety (jumpdenoise.io.output_guard, jumpdenoise.io.output_lock): outputs apart from inputs,
what --overwrite may remove, the lock file (contention, stale locks, reentrance), write errors as one line."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jumpdenoise.errors import OutputInUseError, UnsafeOutputError
from jumpdenoise.io.output_guard import (
    EXPORT_MARKER, check_apart, check_removable, mark_export_folder, recognise, remove_output, write_error,
)
from jumpdenoise.io.output_lock import OutputLock, lock_path


def test_output_equal_to_inside_or_around_an_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "P" / "Images"
    src.mkdir(parents=True)
    with pytest.raises(UnsafeOutputError, match="is the input"):
        check_apart(src, [src])
    with pytest.raises(UnsafeOutputError, match="lies inside the input"):
        check_apart(src / "out.zarr", [src])
    with pytest.raises(UnsafeOutputError, match="lies inside the output"):
        check_apart(tmp_path / "P", [src])
    check_apart(tmp_path / "out.zarr", [src])  # beside it: fine


def test_symlinks_are_followed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "link").symlink_to(src)
    with pytest.raises(UnsafeOutputError, match="is the input"):
        check_apart(tmp_path / "link", [src])
    with pytest.raises(UnsafeOutputError, match="lies inside the input"):
        check_apart(tmp_path / "link" / "o.zarr", [src])


def test_protected_paths_may_contain_the_output_but_not_lie_inside_it(tmp_path: Path) -> None:
    model = tmp_path / "run"
    model.mkdir()
    check_apart(model / "denoised.zarr", [], [model])  # a plate inside the model's folder
    with pytest.raises(UnsafeOutputError, match="inside the output"):
        check_apart(tmp_path, [], [model])
    csv = tmp_path / "load_data.csv"
    csv.write_text("x\n")
    check_apart(tmp_path / "out.zarr", [csv])  # beside a CSV source: fine
    with pytest.raises(UnsafeOutputError, match="is the input"):
        check_apart(csv, [csv])


def _our_plate(path: Path) -> Path:
    (path / ".jumpdenoise").mkdir(parents=True)
    (path / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                                                "attributes": {"jumpdenoise": {"kind": "raw"}}}))
    return path


def test_recognise_knows_our_outputs_only(tmp_path: Path) -> None:
    assert recognise(_our_plate(tmp_path / "p.zarr")) == "plate"
    foreign = tmp_path / "foreign.zarr"
    foreign.mkdir()
    (foreign / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    (foreign / ".jumpdenoise").mkdir()
    assert recognise(foreign) is None  # a sidecar alone does not make a plate ours
    run = tmp_path / "run"
    (run / ".pipeline").mkdir(parents=True)
    assert recognise(run) == "run folder"
    export = tmp_path / "tiffs"
    export.mkdir()
    mark_export_folder(export)
    assert recognise(export) == "TIFF export" and (export / EXPORT_MARKER).is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert recognise(empty) == "empty folder"
    assert recognise(tmp_path / "absent") is None


def test_remove_output_refuses_what_jumpdenoise_did_not_write(tmp_path: Path) -> None:
    user = tmp_path / "d"
    (user / "sub").mkdir(parents=True)
    (user / "sub" / "f").write_text("x")
    with pytest.raises(UnsafeOutputError, match=r"did not write \(it holds sub\)"):
        remove_output(user, "plate")
    assert (user / "sub" / "f").read_text() == "x"
    run = tmp_path / "run"
    (run / ".pipeline").mkdir(parents=True)
    with pytest.raises(UnsafeOutputError, match="jumpdenoise run folder, not a plate"):
        check_removable(run, "plate")
    plate = _our_plate(tmp_path / "p.zarr")
    remove_output(plate, "plate")
    assert not plate.exists()
    remove_output(tmp_path / "absent", "plate")  # nothing to remove


HOLD = """
import sys, time
from jumpdenoise.io.output_lock import OutputLock
with OutputLock(sys.argv[1], token="holder"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_second_process_is_refused_naming_host_and_pid(tmp_path: Path) -> None:
    target = tmp_path / "out.zarr"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputInUseError, match=rf"in use by {socket.gethostname()}:{holder.pid} since "):
            OutputLock(target).acquire()
        with OutputLock(target, token="holder") as shared:  # same run token: shared, not contended
            assert not shared.owned
        start = time.monotonic()
        with pytest.raises(OutputInUseError):
            OutputLock(target, wait_s=1.0).acquire()
        assert time.monotonic() - start >= 1.0
    finally:
        holder.kill()
        holder.wait()
    with OutputLock(target) as lock:  # the holder is dead: its lock is stale and taken over
        assert lock.owned and json.loads(lock_path(target).read_text())["pid"] == os.getpid()
    assert not lock_path(target).exists()


def test_lock_of_another_host_is_stale_only_when_its_heartbeat_is_old(tmp_path: Path) -> None:
    target = tmp_path / "out.zarr"
    path = lock_path(target)
    path.write_text(json.dumps({"host": "elsewhere-node", "pid": 1, "since": "2026-12-04T00:00:00Z",
                                "token": "other"}))
    with pytest.raises(OutputInUseError, match="in use by elsewhere-node:1 since 2026-12-04T00:00:00Z"):
        OutputLock(target, stale_s=600).acquire()
    old = time.time() - 700
    os.utime(path, (old, old))
    with OutputLock(target, stale_s=600) as lock:
        assert lock.owned and lock.holder().host == socket.gethostname()


def test_heartbeat_keeps_a_held_lock_fresh(tmp_path: Path) -> None:
    target = tmp_path / "out.zarr"
    with OutputLock(target, stale_s=4):  # heartbeat every second
        path = lock_path(target)
        old = time.time() - 100
        os.utime(path, (old, old))
        time.sleep(2.5)
        assert time.time() - path.stat().st_mtime < 5


def test_write_errors_are_one_line_naming_path_and_cause(tmp_path: Path) -> None:
    ro = write_error(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x")))
    assert str(ro) == f"cannot write {tmp_path / 'x'}: read-only file system"
    denied = write_error(PermissionError(errno.EACCES, "Permission denied"), tmp_path / "y")
    assert str(denied) == f"cannot write {tmp_path / 'y'}: permission denied"
    full = write_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "absent" / "z", needed=2048)
    assert "no space left on device (" in str(full) and "free, 2.0 KiB needed)" in str(full)
    assert "\n" not in str(full)
