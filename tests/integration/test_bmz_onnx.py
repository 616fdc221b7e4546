"""ONNX weights in the BioImage Model Zoo zip: written when the ``onnx`` extra is installed, equal to the
state dict at a size other than the example's, tested by bioimageio.core; left out (logged) otherwise."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jumpdenoise.predict.model import load_model
from fixtures.models import make_run
from fixtures.plates import noisy_blobs
from jumpdenoise.train.bmz import ONNX_OPSET, onnx_checked
from jumpdenoise.train.export import EXAMPLE_INPUT, example_crop, export_run

onnxruntime = pytest.importorskip("onnxruntime")

BIOIMAGEIO_ONNX = """
import json, sys
sys.modules["careamics"] = None  # an environment without careamics
from bioimageio.core import test_model
summary = test_model(sys.argv[1], weight_format="onnx")
print(json.dumps({"status": summary.status, "errors": [e.msg for d in summary.details for e in d.errors]}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("bmz_onnx")
    run = make_run(root / "run", channels=("DNA", "ER"), depth=2, features=8, steps=4)
    np.save(run / EXAMPLE_INPUT, example_crop(noisy_blobs(2, (80, 72), 5, dtype="float32"), 2, 64))
    path = export_run(run, root / "model.zip", name="onnx check")
    zf = zipfile.ZipFile(path)
    return {"root": root, "run": run, "zip": path, "rdf": yaml.safe_load(zf.read("rdf.yaml")), "zf": zf}


def test_onnx_weights_equal_the_state_dict_at_another_size(exported: dict) -> None:
    onnx = exported["rdf"]["weights"]["onnx"]
    assert onnx["opset_version"] == ONNX_OPSET >= 17 and onnx["parent"] == "pytorch_state_dict"
    assert [n for n in exported["zf"].namelist() if n.startswith("weights.onnx")] == ["weights.onnx"]  # one file
    session = onnxruntime.InferenceSession(exported["zf"].read(onnx["source"]), providers=["CPUExecutionProvider"])
    model = load_model(exported["run"]).module.eval()
    x = np.random.default_rng(0).normal(size=(3, 2, 68, 76)).astype(np.float32)
    got = session.run(None, {"input": x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape and np.allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_bioimageio_test_passes_on_the_onnx_weights(exported: dict) -> None:
    proc = subprocess.run([sys.executable, "-c", BIOIMAGEIO_ONNX, str(exported["zip"])], capture_output=True,
                          text=True, timeout=600, cwd=exported["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"status": "passed", "errors": []}


def test_without_onnxruntime_the_weights_are_left_out(monkeypatch, tmp_path: Path, caplog) -> None:
    import importlib.util

    from careamics.models.unet import UNet

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    model = UNet(conv_dims=2, num_classes=1, in_channels=1, depth=2, num_channels_init=8)
    with caplog.at_level(logging.INFO, logger="jumpdenoise.train.bmz"):
        assert not onnx_checked(model, np.zeros((1, 1, 16, 16), np.float32), 4, tmp_path / "w.onnx")
    assert "onnxruntime not installed (pip install 'jumpdenoise[onnx]')" in caplog.text
    assert not (tmp_path / "w.onnx").exists()
