"""The light core works without the ``train`` extra: torch, CAREamics and Lightning are blocked.

Each command runs in a subprocess whose import system refuses ``torch``, ``careamics``,
``lightning`` and ``bioimageio`` (a meta-path finder raising ``ImportError``), as in an
environment where only ``pip install jumpdenoise`` was run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from jumpdenoise.io.ngff import plate_info, read_field
from jumpdenoise.io.synthetic import generate_plate

BLOCKED = ("torch", "careamics", "lightning", "pytorch_lightning", "lightning_fabric", "bioimageio")
BLOCKER = f"""
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} blocked (light core test)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""
CLI = BLOCKER + "from jumpdenoise.cli import main\nsys.argv[0] = 'jumpdenoise'\nmain()\n"
OPEN_PLATE = BLOCKER + """
import json
import jumpdenoise
view = jumpdenoise.open_plate(sys.argv[1])
print(json.dumps({"dims": list(view.dims), "shape": list(view.shape),
                  "first_dna_sum": int(view.isel(well=0, field=0).sel(c="DNA").sum()),
                  "train_modules": sorted(m for m in sys.modules if m.split(".")[0] in %r)}))
""" % (BLOCKED,)


def light(*args: object, script: str = CLI, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` with the train modules blocked (text output)."""
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A Phenix-layout plate: 1 x 2 wells, 2 fields, 2 channels, 48 px."""
    return generate_plate(tmp_path_factory.mktemp("light_src"), plate_name="LIGHT", rows=1, columns=2, fields=2,
                          channels=("DNA", "Mito"), size=(48, 48), seed=5, ground_truth=False, workers=1)


def test_blocker_blocks() -> None:
    run = light(script=BLOCKER + "import torch\n")
    assert run.returncode != 0 and "torch blocked" in run.stderr


def test_convert_stats_exports_and_open_plate_without_torch(source: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw.zarr"
    run = light("convert", source, raw, "--executor", "local", "--workers", "1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fields: 4 converted" in run.stdout
    info = plate_info(raw)
    assert info.n_fields == 4 and info.channels == ["DNA", "Mito"]

    run = light("stats", raw)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "DNA" in run.stdout and "Mito" in run.stdout

    run = light("export-tiff", raw, tmp_path / "tiffs")
    assert run.returncode == 0, run.stdout + run.stderr
    tiffs = sorted((tmp_path / "tiffs").rglob("*.tif*"))
    assert len(tiffs) == 4 * 2
    field = read_field(raw, "A01", 0)
    assert any(np.array_equal(tifffile.imread(t), field[0]) for t in tiffs)

    run = light("export-zarr", raw, tmp_path / "v04.zarr")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "NGFF 0.4" in run.stdout and (tmp_path / "v04.zarr" / ".zattrs").is_file()

    run = light(raw, script=OPEN_PLATE)
    assert run.returncode == 0, run.stdout + run.stderr
    view = json.loads(run.stdout)
    assert view["dims"] == ["well", "field", "c", "y", "x"] and view["shape"] == [2, 2, 2, 48, 48]
    assert view["first_dna_sum"] == int(field[0].sum()) and view["train_modules"] == []


def test_the_pipeline_until_stats_without_torch(source: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"source: {{path: {source}}}\npaths: {{workdir: {tmp_path / 'run'}}}\n"
                      "executor: {kind: local, workers: 1}\n")
    run = light("run", config, "--until", "stats")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all stages done" in run.stdout
    assert plate_info(tmp_path / "run" / "raw.zarr").statistics is not None


@pytest.mark.parametrize("command", [["train", "config.yaml"], ["predict", "run", "raw.zarr", "out.zarr"],
                                     ["export", "run"], ["run"], ["submit", "config.yaml"]])
def test_training_commands_without_the_extra_say_which_to_install(command: list[str], tmp_path: Path) -> None:
    run = light(*command, cwd=tmp_path)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"error: `jumpdenoise {command[0]}` needs the train extra")
    assert "pip install 'jumpdenoise[train]'" in lines[0] and "torch" in lines[0]
