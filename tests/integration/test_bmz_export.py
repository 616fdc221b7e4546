"""BioImage Model Zoo export: name, authors, environment, torchscript, sizes, samples, bioimageio test.

The bioimageio.core test runs in a subprocess where ``import careamics`` fails, as in an
environment without careamics (deepImageJ, a fresh bioimageio.core install): the
torchscript weights must run with torch alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures.models import make_run
from fixtures.plates import noisy_blobs
from typer.testing import CliRunner

from jumpdenoise.cli import app
from jumpdenoise.errors import ModelError
from jumpdenoise.predict.model import load_model
from jumpdenoise.train.bmz import bmz_name, torch_release
from jumpdenoise.train.export import EXAMPLE_INPUT, example_crop, export_run

BIOIMAGEIO_TEST = """
import json, sys
sys.modules["careamics"] = None  # an environment without careamics
from bioimageio.core import test_model
summary = test_model(sys.argv[1], weight_format="torchscript")
print(json.dumps({"status": summary.status, "warnings": [[w.severity, w.msg] for d in summary.details
                                                          for w in d.warnings],
                  "errors": [e.msg for d in summary.details for e in d.errors]}))
"""
#: The one alert ``bioimageio test`` gives the zip exported without ``--maintainer`` (severity
#: 35): it names no GitHub user (jumpdenoise.train.bmz, *GitHub user*).
NO_GITHUB_USER = [35, "Missing `maintainers` or any author in `authors` with a specified `github_user` name."]
#: A GitHub user name that does not exist: looked up online it fails (404), offline too (no network).
MAINTAINER = "jumpdenoise-no-such-maintainer"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("bmz")
    run = make_run(root / "run", channels=("DNA", "ER"), depth=2, features=8, steps=4)
    np.save(run / EXAMPLE_INPUT, example_crop(noisy_blobs(2, (80, 72), 5, dtype="float32"), 2, 64))
    system_tmp = root / "system-tmp"
    system_tmp.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(system_tmp))
        res = CliRunner().invoke(app, ["export", str(run), "--out", str(root / "model.zip"), "--name", "demo",
                                       "--authors", "Jane Doe", "--authors", "John Roe"])
    assert res.exit_code == 0, res.output
    assert not list(system_tmp.iterdir()), "the export left files in the temporary folder"
    zf = zipfile.ZipFile(root / "model.zip")
    return {"root": root, "run": run, "zip": root / "model.zip", "names": zf.namelist(),
            "rdf": yaml.safe_load(zf.read("rdf.yaml")), "zf": zf}


def test_bmz_name_is_always_valid() -> None:
    assert bmz_name("demo") == "demo N2V denoiser"
    assert bmz_name("jd/run:7") == "jd_run_7"
    assert bmz_name("") == "N2V denoiser" and len(bmz_name("x" * 300)) == 128
    assert torch_release("2.11.0+cu130") == "2.11.0"


def test_description_name_authors_environment_sizes_samples(exported: dict) -> None:
    rdf, zf = exported["rdf"], exported["zf"]
    assert rdf["name"] == "demo N2V denoiser"
    assert [a["name"] for a in rdf["authors"]] == ["Jane Doe", "John Roe"]
    env = zf.read("environment.yml").decode()
    assert f"torch=={torch_release()}\n" in env and "+" not in env
    assert rdf["weights"]["torchscript"]["pytorch_version"] == torch_release()
    assert set(rdf["weights"]) == {"torchscript", "pytorch_state_dict", "onnx"}  # onnx: the dev extra has it
    (inp,), (outp,) = rdf["inputs"], rdf["outputs"]
    space = {a["id"]: a["size"] for a in inp["axes"] if a["type"] == "space"}
    assert space == {"y": {"min": 4, "step": 4}, "x": {"min": 4, "step": 4}}
    assert [a["size"]["axis_id"] for a in outp["axes"] if a["type"] == "space"] == ["y", "x"]
    assert next(a for a in inp["axes"] if a["type"] == "channel")["channel_names"] == ["DNA", "ER"]
    import tifffile

    for descr in (inp, outp):
        sample = tifffile.imread(zf.open(descr["sample_tensor"]["source"]))
        test = np.load(zf.open(descr["test_tensor"]["source"]))
        assert sample.shape == test.shape == (1, 2, 64, 64) and np.array_equal(sample, test)
    assert json.loads(zf.read("normalization.json"))["channels"] == ["DNA", "ER"]


def test_torchscript_weights_equal_the_state_dict_at_another_size(exported: dict) -> None:
    script = torch.jit.load(exported["zf"].open(exported["rdf"]["weights"]["torchscript"]["source"]))
    model = load_model(exported["run"]).module
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 2, 68, 76)).astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(script(x), model(x), rtol=1e-5, atol=1e-5)


def test_bioimageio_test_passes_without_careamics_and_predict_loads_the_zip(exported: dict) -> None:
    proc = subprocess.run([sys.executable, "-c", BIOIMAGEIO_TEST, str(exported["zip"])], capture_output=True,
                          text=True, timeout=600, cwd=exported["root"], check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["status"] == "passed" and report["errors"] == []
    # every warning of severity WARNING (30) or above: only the GitHub user alert
    assert [w for w in report["warnings"] if w[0] >= 30] == [NO_GITHUB_USER]
    # below it, only the information that the torchscript output reproduces the test output
    infos = [msg for severity, msg in report["warnings"] if severity < 30]
    assert infos and all(m.startswith("Output `prediction`: all elements agree") for m in infos), infos
    rdf = exported["rdf"]
    assert "maintainers" not in rdf and not any("github_user" in a for a in rdf["authors"])
    loaded = load_model(exported["zip"])
    assert loaded.channels == ["DNA", "ER"]


def test_default_name_comes_from_the_run_and_bad_output_is_named(exported: dict, tmp_path: Path) -> None:
    out = export_run(exported["run"], tmp_path / "default.zip")
    rdf = yaml.safe_load(zipfile.ZipFile(out).read("rdf.yaml"))
    assert rdf["name"] == "jd_predict_test" and rdf["authors"] == [{"name": "jumpdenoise developers"}]
    with pytest.raises(ModelError, match=r"must end in \.zip"):
        export_run(exported["run"], tmp_path / "model.tar")


def test_loading_the_zip_leaves_nothing_in_the_temporary_folder(exported: dict, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The package is unpacked into a folder jumpdenoise owns and removes (jumpdenoise.compat.load_careamics_bmz)."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    loaded = load_model(exported["zip"])
    assert not list(system_tmp.iterdir()), "loading the zip left files in the temporary folder"
    assert loaded.kind == "bmz" and loaded.channels == ["DNA", "ER"]
    state = torch.load(exported["run"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    for name, value in loaded.module.state_dict().items():
        assert torch.equal(value, state["state_dict"][f"model.{name}"]), name


def test_maintainer_is_written_and_the_zip_loads_without_looking_it_up(exported: dict, tmp_path: Path) -> None:
    """Export and load never look the maintainer up at api.github.com (the test's one is no GitHub user).

    ``bioimageio test`` of this zip does (io checks on): it needs internet and a real user, so it
    is not run here.
    """
    out = tmp_path / "maintained.zip"
    res = CliRunner().invoke(app, ["export", str(exported["run"]), "--out", str(out), "--name", "demo",
                                   "--maintainer", MAINTAINER])
    assert res.exit_code == 0, res.output
    rdf = yaml.safe_load(zipfile.ZipFile(out).read("rdf.yaml"))
    assert rdf["maintainers"] == [{"github_user": MAINTAINER}]
    loaded = load_model(out)
    assert loaded.kind == "bmz" and loaded.channels == ["DNA", "ER"]
    state = torch.load(exported["run"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    for name, value in loaded.module.state_dict().items():
        assert torch.equal(value, state["state_dict"][f"model.{name}"]), name


@pytest.mark.parametrize("user", ["", "two words", "-leading", "trailing-", "a--b", "x" * 40])
def test_a_maintainer_that_is_no_github_user_name_is_refused(exported: dict, tmp_path: Path, user: str) -> None:
    with pytest.raises(ModelError, match=r"--maintainer .*not a GitHub user name"):
        export_run(exported["run"], tmp_path / "model.zip", maintainers=[user])
    assert not (tmp_path / "model.zip").exists()
