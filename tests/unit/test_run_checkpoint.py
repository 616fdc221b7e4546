"""Which checkpoint a run folder gives (:func:`jumpdenoise.train.run_folder.run_checkpoint`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jumpdenoise.errors import ModelError
from jumpdenoise.train.run_folder import RunFolder, run_checkpoint, write_best


def _ckpt(path: Path, mtime: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture()
def run(tmp_path: Path) -> RunFolder:
    rf = RunFolder(tmp_path / "run")
    _ckpt(rf.last, 2_000)
    _ckpt(rf.checkpoints / "epoch=3-val=0.1.ckpt", 1_000)
    return rf


def test_best_json_names_the_checkpoint(run: RunFolder) -> None:
    write_best(run, best_path=str(run.checkpoints / "epoch=3-val=0.1.ckpt"), best_score=0.1, epochs_done=4)
    assert json.loads(run.best.read_text())["best"] == "checkpoints/epoch=3-val=0.1.ckpt"
    assert run_checkpoint(run) == run.checkpoints / "epoch=3-val=0.1.ckpt"
    assert run_checkpoint(run.path, "best") == run.checkpoints / "epoch=3-val=0.1.ckpt"
    assert run_checkpoint(str(run.path), "last") == run.last


def test_last_when_best_json_is_absent_or_names_a_missing_file(run: RunFolder) -> None:
    assert run_checkpoint(run) == run.last
    run.best.write_text(json.dumps({"best": "checkpoints/gone.ckpt"}))
    assert run_checkpoint(run) == run.last


def test_newest_checkpoint_when_last_is_missing(run: RunFolder) -> None:
    run.last.unlink()
    older = _ckpt(run.checkpoints / "a" / "epoch=1.ckpt", 500)
    assert run_checkpoint(run) == run.checkpoints / "epoch=3-val=0.1.ckpt"
    os.utime(older, (3_000, 3_000))
    assert run_checkpoint(run) == older


def test_a_named_checkpoint_relative_to_the_run(run: RunFolder) -> None:
    assert run_checkpoint(run, "checkpoints/epoch=3-val=0.1.ckpt") == run.checkpoints / "epoch=3-val=0.1.ckpt"
    with pytest.raises(ModelError, match="checkpoint checkpoints/nope.ckpt not found"):
        run_checkpoint(run, "checkpoints/nope.ckpt")


def test_errors_name_the_run_folder(tmp_path: Path) -> None:
    empty = RunFolder(tmp_path / "empty")
    empty.checkpoints.mkdir(parents=True)
    with pytest.raises(ModelError, match=r"empty: no checkpoint \(expected best.json or checkpoints/last.ckpt\)"):
        run_checkpoint(empty)
    empty.best.write_text("{not json")
    with pytest.raises(ModelError, match=r"best.json: unreadable"):
        run_checkpoint(empty)
