"""contained_tempdir: temporary files made inside the block go, the default folder comes back."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from jumpdenoise.scratch import contained_tempdir


def test_files_made_inside_are_removed_even_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError, match="boom"):
        with contained_tempdir() as base:
            assert base.parent == tmp_path and tempfile.gettempdir() == str(base)
            made = Path(tempfile.mkdtemp())
            (made / "cover.png").write_bytes(b"x" * 10)
            assert made.parent == base
            raise RuntimeError("boom")
    assert tempfile.tempdir == str(tmp_path)
    assert not list(tmp_path.iterdir())


def test_explicit_dir_is_untouched(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    with contained_tempdir():
        fd, name = tempfile.mkstemp(dir=keep)
    assert Path(name).exists() and Path(name).parent == keep


def test_nested_blocks_restore_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with contained_tempdir() as outer:
        with contained_tempdir() as inner:
            assert inner.parent == outer and tempfile.gettempdir() == str(inner)
        assert tempfile.gettempdir() == str(outer) and not inner.exists()
    assert tempfile.tempdir == str(tmp_path) and not outer.exists()
