"""Never destroy data, never a traceback: the data-destroying cases of a fault-injection pass,
lock contention, a read-only output (bind mount) and a full disk (small tmpfs), through the real
CLI (subprocesses, exit codes, stderr). Mounts need root; a test that cannot make its mount is
skipped and says so."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from jumpdenoise.io.synthetic import generate_plate
from plate_files import tree_bytes

CLI = [sys.executable, "-c", "from jumpdenoise.cli import main; main()"]
PLATE = dict(rows=1, columns=2, fields=2, channels=("DNA", "Mito"), size=(64, 64), seed=5, ground_truth=False,
             workers=1)


def jd(*args: object, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def error_line(res: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a failed command (and no traceback)."""
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return generate_plate(tmp_path_factory.mktemp("safety") / "P", **PLATE)


@pytest.fixture(scope="module")
def reference(source: Path, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference") / "ref.zarr"
    res = jd("convert", source, out, "--executor", "local", "--workers", "1")
    assert res.returncode == 0, res.stderr
    return tree_bytes(out)


@pytest.mark.parametrize("target", ["source", "parent", "inside"])
def test_convert_into_or_around_its_source_is_refused_and_deletes_nothing(source: Path, target: str) -> None:
    before = files_of(source.parent)
    out = {"source": source, "parent": source.parent, "inside": source / "out.zarr"}[target]
    res = jd("convert", source, out, "--overwrite", "--executor", "local")
    assert res.returncode == 2
    line = error_line(res)
    assert res.stderr.strip() == line  # nothing else printed: refused before anything ran
    assert str(source) in line
    assert files_of(source.parent) == before


def test_overwrite_keeps_a_folder_jumpdenoise_did_not_write(source: Path, tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f").write_text("x\n")
    res = jd("convert", source, tmp_path / "d", "--overwrite", "--executor", "local")
    assert res.returncode == 2
    assert "did not write" in error_line(res) and str(tmp_path / "d") in error_line(res)
    assert (tmp_path / "d" / "sub" / "f").read_text() == "x\n"
    assert sorted(os.listdir(tmp_path / "d")) == ["sub"]


def test_overwrite_replaces_our_plate_and_rerun_says_already_complete(source, reference, tmp_path) -> None:
    out = tmp_path / "out.zarr"
    assert jd("convert", source, out, "--executor", "local").returncode == 0
    res = jd("convert", source, out, "--executor", "local")
    assert res.returncode == 0 and "already complete" in res.stdout and "converted," not in res.stdout
    res = jd("convert", source, out, "--overwrite", "--executor", "local")
    assert res.returncode == 0 and "fields: 4 converted" in res.stdout
    assert tree_bytes(out) == reference


def test_run_folder_inside_the_source_and_training_onto_its_plate_are_refused(source: Path, tmp_path: Path) -> None:
    before = files_of(source.parent)
    config = tmp_path / "run.yaml"
    config.write_text(f"source: {{path: {source}}}\npaths: {{workdir: {source / 'run'}}}\n")
    res = jd("run", config)
    assert res.returncode == 2 and "inside the source" in error_line(res)
    assert files_of(source.parent) == before
    plate = tmp_path / "s.zarr"
    assert jd("convert", source, plate, "--executor", "local").returncode == 0
    config.write_text(f"paths: {{raw_plate: {plate}}}\n")
    plate_files = files_of(plate)
    res = jd("train", config, "--run-dir", plate)
    assert res.returncode == 2 and "is the input" in error_line(res)
    res = jd("train", config, "--run-dir", tmp_path)  # the run folder would hold the plate
    assert res.returncode == 2 and "inside the output" in error_line(res)
    assert files_of(plate) == plate_files


@pytest.fixture(scope="module")
def model_and_plate(source: Path, tmp_path_factory) -> tuple[Path, Path]:
    from fixtures.models import make_run

    root = tmp_path_factory.mktemp("predict_safety")
    run = make_run(root / "run", channels=("DNA", "Mito"), depth=2, features=8, steps=2)
    plate = root / "s.zarr"
    assert jd("convert", source, plate, "--executor", "local").returncode == 0
    return run, plate


def test_predict_onto_its_own_input_is_refused_and_keeps_the_raw_plate(model_and_plate) -> None:
    run, plate = model_and_plate
    before = files_of(plate)
    res = jd("predict", run, plate, plate, "--overwrite")
    assert res.returncode == 2 and "is the input" in error_line(res)
    assert files_of(plate) == before
    res = jd("predict", run, plate, plate.parent, "--overwrite")  # the output would hold the raw plate
    assert res.returncode == 2 and "inside the output" in error_line(res)
    assert files_of(plate) == before


def test_predict_rerun_on_a_complete_output_says_already_complete(model_and_plate, tmp_path) -> None:
    run, plate = model_and_plate
    out = tmp_path / "den.zarr"
    first = jd("predict", run, plate, out)
    assert first.returncode == 0 and "denoised 4/4" in first.stdout, first.stderr
    again = jd("predict", run, plate, out)
    assert again.returncode == 0 and "already complete" in again.stdout and "denoised 4/4" not in again.stdout


def test_export_tiff_writes_only_into_its_own_folders(model_and_plate, tmp_path) -> None:
    run, plate = model_and_plate
    den = tmp_path / "den.zarr"
    assert jd("predict", run, plate, den).returncode == 0
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    res = jd("export-tiff", den, user, "--overwrite")
    assert res.returncode == 2 and "did not write" in error_line(res)
    assert os.listdir(user) == ["notes.txt"]
    res = jd("export-tiff", den, den / "tiffs")
    assert res.returncode == 2 and "inside the input" in error_line(res)
    export = tmp_path / "export"
    assert jd("export-tiff", den, export).returncode == 0
    assert jd("export-tiff", den, export, "--overwrite").returncode == 0  # an earlier export: written over


HOLD = """
import sys, time
from jumpdenoise.io.output_lock import OutputLock
with OutputLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_second_run_on_a_locked_output_is_refused_with_host_and_pid(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "120"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = jd("convert", source, out, "--executor", "local")
        assert res.returncode == 2
        assert f"in use by {socket.gethostname()}:{holder.pid} since " in error_line(res)
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    res = jd("convert", source, out, "--executor", "local")  # the dead holder's lock is stale
    assert res.returncode == 0, res.stderr


def test_two_conversions_started_together_give_one_plate_and_at_most_one_clean_refusal(source, reference,
                                                                                     tmp_path) -> None:
    for round_ in range(2):
        out = tmp_path / f"race{round_}.zarr"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs = [subprocess.Popen([*CLI, "convert", str(source), str(out), "--executor", "local"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        codes = sorted(code for code, _, _ in results)
        assert codes in ([0, 0], [0, 2]), results
        for code, _, err in results:
            assert "Traceback" not in err
            if code == 2:
                assert "is in use by" in error_line(subprocess.CompletedProcess([], code, "", err))
        assert tree_bytes(out) == reference


def test_wait_waits_for_the_other_run_to_end(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = jd("convert", source, out, "--executor", "local", "--wait", "120")
        assert res.returncode == 0, res.stderr
        assert holder.poll() is not None  # it ran after the holder ended
    finally:
        holder.kill()
        holder.wait()


def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount ({' '.join(args)}): {res.stderr.strip()} (needs root and CAP_SYS_ADMIN)")


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[Path]:
    """``folder`` (created) bind-mounted read-only onto itself while the block runs."""
    folder.mkdir()
    _mount("--bind", str(folder), str(folder))
    try:
        _mount("-o", "remount,ro,bind", str(folder))
        yield folder
    finally:
        _umount(folder)


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "4m") -> Iterator[Path]:
    """``folder`` (created) as a tmpfs of ``size`` while the block runs."""
    folder.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        _umount(folder)


def test_read_only_output_is_one_line_and_rerun_after_the_fix_is_identical(source, reference, tmp_path) -> None:
    with read_only_folder(tmp_path / "ro") as ro:
        res = jd("convert", source, ro / "out.zarr", "--executor", "local")
        assert res.returncode == 2
        assert error_line(res) == f"error: cannot write {ro / 'out.zarr'}: read-only file system"
    res = jd("convert", source, ro / "out.zarr", "--executor", "local")
    assert res.returncode == 0, res.stderr
    assert tree_bytes(ro / "out.zarr") == reference


def test_predict_and_export_tiff_into_a_read_only_folder_are_one_line(model_and_plate, tmp_path) -> None:
    run, plate = model_and_plate
    den = tmp_path / "den.zarr"
    assert jd("predict", run, plate, den).returncode == 0
    with read_only_folder(tmp_path / "ro") as ro:
        res = jd("predict", run, plate, ro / "den.zarr")
        assert res.returncode == 2
        assert error_line(res) == f"error: cannot write {ro / 'den.zarr'}: read-only file system"
        res = jd("export-tiff", den, ro / "tiffs")
        assert res.returncode == 2
        assert error_line(res).endswith(": read-only file system") and str(ro / "tiffs") in error_line(res)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` but ``leave`` bytes."""
    st = os.statvfs(folder)
    filler = folder / "filler"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_disk_full_in_prepare_is_one_line_with_free_bytes(source, reference, tmp_path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        filler = _fill(disk, 16 * 1024)  # room for the lock, not for the plate's metadata
        res = jd("convert", source, disk / "out.zarr", "--executor", "local")
        assert res.returncode == 2
        line = error_line(res)
        assert "no space left on device (" in line and "free)" in line and str(disk) in line
        filler.unlink()
        res = jd("convert", source, disk / "out.zarr", "--executor", "local")
        assert res.returncode == 0, res.stderr
        assert tree_bytes(disk / "out.zarr") == reference


def test_disk_full_during_units_names_the_output_and_rerun_is_identical(source, reference, tmp_path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        out = disk / "out.zarr"
        filler = _fill(disk, 120 * 1024)  # room for the metadata (~52 KiB), not for every field (~270 KiB)
        res = jd("convert", source, out, "--executor", "local", "--fields-per-unit", "1")
        assert res.returncode == 2
        assert "unit(s) failed" in error_line(res)
        failed = [ln for ln in res.stderr.splitlines() if "No space left on device" in ln]
        assert failed and all(f"(output {out}, " in ln and " free)" in ln for ln in failed), res.stderr
        filler.unlink()
        res = jd("convert", source, out, "--executor", "local", "--fields-per-unit", "1")
        assert res.returncode == 0, res.stderr
        assert tree_bytes(out) == reference


def test_disk_full_in_finalize_leaves_no_temporary_and_rerun_is_identical(source, reference, tmp_path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        out = disk / "out.zarr"
        assert jd("convert", source, out, "--executor", "local").returncode == 0
        stats = out / ".jumpdenoise" / "statistics.csv"
        stats.unlink()  # finalize rewrites the statistics on a rerun
        filler = _fill(disk, 4096)  # the lock fits, the statistics do not
        res = jd("convert", source, out, "--executor", "local")
        assert res.returncode == 2
        assert "no space left on device" in error_line(res)
        left = [p for p in (*out.iterdir(), *(out / ".jumpdenoise").iterdir()) if p.name.endswith(".tmp")]
        assert left == []
        filler.unlink()
        res = jd("convert", source, out, "--executor", "local")
        assert res.returncode == 0, res.stderr
        assert tree_bytes(out) == reference and stats.is_file()


def test_debug_flag_shows_the_traceback(tmp_path: Path) -> None:
    res = jd("info", tmp_path / "absent.zarr")
    assert res.returncode == 2 and "not an OME-Zarr plate" in error_line(res)
    res = jd("--debug", "info", tmp_path / "absent.zarr")
    assert res.returncode != 0 and "Traceback" in res.stderr
