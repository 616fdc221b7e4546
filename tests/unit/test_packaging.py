"""Packaging metadata: licence, Python range, every third-party import declared, and the light core
(``pip install jumpdenoise``) apart from the ``train`` extra (torch, CAREamics, Lightning)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
#: imported only behind a guard that falls back when absent
OPTIONAL_IMPORTS = {"cellpose"}
#: distributions of modules whose name differs, for environments without them (the light core)
MODULE_DISTRIBUTIONS = {"bioimageio": ["bioimageio.core"]}


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
    extras = project["optional-dependencies"]
    for requirement in project["dependencies"] + extras["train"] + extras["onnx"]:
        name, _, extras = re.match(r"([A-Za-z0-9_.\-]+)(\[([^\]]*)\])?", requirement).groups()
        declared |= {_norm(name), *(_norm(e) for e in (extras or "").split(",") if e)}
    dists = packages_distributions()
    def provided_by(module: str) -> list[str]:
        return dists.get(module) or MODULE_DISTRIBUTIONS.get(module, [module])

    undeclared = {m: provided_by(m) for m in _imported_top_level_modules() - OPTIONAL_IMPORTS
                  if not {_norm(d) for d in provided_by(m)} & declared}
    assert not undeclared, f"imported but not in [project.dependencies] or the train extra: {undeclared}"
    assert "tqdm" not in declared and "ome-zarr" not in declared
    assert any(r.startswith("ome-zarr>") for r in project["optional-dependencies"]["dev"])


#: What the light core must never pull in, directly or through its dependencies.
TRAIN_ONLY = {"torch", "careamics", "lightning", "pytorch-lightning", "lightning-fabric", "bioimageio-core",
              "triton", "torchvision", "torchmetrics"}


def _closure(requirements: list[str]) -> set[str]:
    """Distribution names ``requirements`` pull in, resolved against this environment's metadata."""
    env = default_environment()
    seen: set[tuple[str, tuple[str, ...]]] = set()
    stack = [Requirement(r) for r in requirements]
    while stack:
        req = stack.pop()
        key = (_norm(req.name), tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = distribution(req.name).requires or []
        except PackageNotFoundError:
            continue  # not installed here: its own dependencies are unknown
        for text in requires:
            sub = Requirement(text)
            extras = sorted(req.extras) or [""]
            if sub.marker is None or any(sub.marker.evaluate({**env, "extra": e}) for e in extras):
                stack.append(sub)
    return {name for name, _ in seen}


def test_light_core_pulls_in_no_torch_and_the_train_extra_does() -> None:
    project = _project()
    core = _closure(project["dependencies"])
    assert not core & TRAIN_ONLY, f"the light core pulls in {sorted(core & TRAIN_ONLY)}"
    assert not any(name.startswith("nvidia-") for name in core)
    assert {"zarr", "dask", "xarray", "tifffile", "ome-zarr-models"} <= core
    train = _closure(project["optional-dependencies"]["train"])
    assert {"torch", "careamics", "lightning", "bioimageio-core"} <= train
    dev = project["optional-dependencies"]["dev"]
    assert "jumpdenoise[train,onnx]" in dev  # make install / make demo / make test get everything
    assert not _closure(project["optional-dependencies"]["onnx"]) & TRAIN_ONLY
    assert {_norm(Requirement(r).name) for r in dev} >= {"napari-ome-zarr", "ome-zarr", "pytest"}


def test_built_metadata_has_the_light_core_and_the_extras(tmp_path: Path) -> None:
    """Build the wheel metadata with pip (``--dry-run``: nothing installed) and read its requirement sets;
    the light core resolves against this environment without installing anything else."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "jumpdenoise", source / "jumpdenoise", ignore=shutil.ignore_patterns("__pycache__"))
    report = tmp_path / "report.json"
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report),
                          str(source)], capture_output=True, text=True, timeout=300)
    if run.returncode != 0 and os.environ.get("CI", "").lower() not in {"1", "true", "yes"}:
        pytest.skip(f"pip cannot build the metadata here (no index?): {run.stderr.strip()[-300:]}")
    assert run.returncode == 0, run.stderr
    install = json.loads(report.read_text())["install"]
    assert [item["metadata"]["name"] for item in install] == ["jumpdenoise"]  # nothing else to fetch
    metadata = install[0]["metadata"]
    assert set(metadata["provides_extra"]) == {"train", "onnx", "dev"}
    by_extra: dict[str, set[str]] = {}
    for text in metadata["requires_dist"]:
        req = Requirement(text)
        extra = next((e for e in ("train", "onnx", "dev") if req.marker and req.marker.evaluate({"extra": e})), "")
        by_extra.setdefault(extra, set()).add(_norm(req.name))
    assert not by_extra[""] & TRAIN_ONLY
    assert by_extra["train"] == {"careamics", "torch", "lightning", "bioimageio-core"}
    assert by_extra["onnx"] == {"onnx", "onnxscript", "onnxruntime"}
    assert {"jumpdenoise", "napari-ome-zarr", "pytest"} <= by_extra["dev"]
