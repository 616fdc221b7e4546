"""Helpers shared by the conversion tests (imported by module name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path


def tree_bytes(plate: Path) -> dict[str, bytes]:
    """Every file of the zarr hierarchy (not the .jumpdenoise sidecar, not temporary files)."""
    out = {}
    for root, dirs, files in os.walk(plate):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                p = Path(root) / name
                out[str(p.relative_to(plate))] = p.read_bytes()
    return out
