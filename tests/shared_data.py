"""The real sample data the tests read: ``<repository>/../shared/data`` (read-only).

:func:`shared_data` returns a folder of it. When the folder is missing the calling test
module is skipped on a developer machine and FAILS in CI (``CI=true``), so that a CI run
never passes without the real-data tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """``<repository>/../shared/data/<parts>``; skip (locally) or fail (CI) when it is missing."""
    path = ROOT.joinpath(*parts).resolve()
    if not path.exists():
        message = f"shared sample data not found: {path}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return path
