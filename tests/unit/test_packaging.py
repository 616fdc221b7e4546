"""Packaging metadata: licence, Python range, and every third-party import declared."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: imported only behind a guard that falls back when absent
OPTIONAL_IMPORTS = {"cellpose"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _imported_top_level_modules() -> set[str]:
    modules: set[str] = set()
    for path in (REPO / "jumpdenoise").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"jumpdenoise"}


def test_licence_file_and_metadata() -> None:
    project = _project()
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "Copyright (c) 2026, jumpdenoise developers" in text
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]
    assert project["requires-python"] == ">=3.11"
    for version in ("3.11", "3.12"):
        assert f"Programming Language :: Python :: {version}" in project["classifiers"]
    assert "version" in project["dynamic"]


def test_every_third_party_import_is_a_declared_dependency() -> None:
    project = _project()
    declared: set[str] = set()
    for requirement in project["dependencies"]:
        name, _, extras = re.match(r"([A-Za-z0-9_.\-]+)(\[([^\]]*)\])?", requirement).groups()
        declared |= {_norm(name), *(_norm(e) for e in (extras or "").split(",") if e)}
    dists = packages_distributions()
    undeclared = {m: dists.get(m, [m]) for m in _imported_top_level_modules() - OPTIONAL_IMPORTS
                  if not {_norm(d) for d in dists.get(m, [m])} & declared}
    assert not undeclared, f"imported but not in [project.dependencies]: {undeclared}"
    assert "tqdm" not in declared and "ome-zarr" not in declared
    assert any(r.startswith("ome-zarr>") for r in project["optional-dependencies"]["dev"])
