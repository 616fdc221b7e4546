"""The output offset of a network: measured on held-out fields without truth, removed from the
network, recorded in quality.json and applied when the checkpoint it was measured on is loaded."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from jumpdenoise.compat import unet_output_bias
from jumpdenoise.predict.engine import Predictor
from jumpdenoise.predict.model import LoadedModel, load_model
from jumpdenoise.quality.calibration import apply_calibration, measure_output_offset, shift_output
from jumpdenoise.quality.gain import estimate_run_gain
from tests.fixtures.models import make_run, random_careamics_unet
from tests.fixtures.plates import noisy_blobs

MEAN, STD = np.array([300.0, 120.0]), np.array([40.0, 10.0])


def _model() -> LoadedModel:
    return LoadedModel(module=random_careamics_unet(2), channels=["DNA", "ER"], mean=MEAN.copy(), std=STD.copy(),
                       careamics_config={}, source=Path("random"))


def _fields(n: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.normal(MEAN[:, None, None], STD[:, None, None], (2, 48, 64)).astype(np.float32) for _ in range(n)]


def _offset(model: LoadedModel, fields: list[np.ndarray]) -> np.ndarray:
    return measure_output_offset(Predictor(model, tile_size=None), fields)


def test_the_measured_offset_is_removed_from_the_network() -> None:
    model, fields = _model(), _fields()
    before = _offset(model, fields)
    by_hand = np.mean([Predictor(model, tile_size=None).denoise(f).astype(np.float64) - f for f in fields],
                      axis=(0, 2, 3))
    np.testing.assert_allclose(before, by_hand, rtol=1e-6)
    assert np.all(np.abs(before) > 0.05 * STD)  # random BatchNorm statistics: a real offset to remove
    assert shift_output(model, before)
    np.testing.assert_allclose(_offset(model, fields), 0.0, atol=1e-3 * STD.max())
    np.testing.assert_allclose(model.output_offset, before)
    assert shift_output(model, np.array([1.0, -2.0]))  # a second shift adds up
    np.testing.assert_allclose(_offset(model, fields), [-1.0, 2.0], atol=1e-3 * STD.max())
    np.testing.assert_allclose(model.output_offset, before + [1.0, -2.0])


def test_a_network_a_bias_cannot_shift_is_left_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    conv = torch.nn.Conv2d(2, 2, 3, padding=1, groups=2).eval()
    model = LoadedModel(module=conv, channels=None, mean=MEAN, std=STD, careamics_config={}, source=Path("conv"))
    weights = conv.bias.detach().clone()
    with caplog.at_level(logging.WARNING):
        assert not shift_output(model, np.array([3.0, 3.0]))
    assert torch.equal(conv.bias, weights) and model.output_offset is None
    assert any("not removed" in r.getMessage() for r in caplog.records)


def test_calibration_moves_a_copy_to_the_recorded_offset() -> None:
    model, fields = _model(), _fields(1)
    plain = Predictor(model, tile_size=None).denoise(fields[0])
    record = {"channels": {"DNA": {"output_offset": 4.0, "blend": [1.0, 1.0]},
                           "ER": {"output_offset": -1.5, "blend": [1.0, 1.0]}}}
    calibrated = apply_calibration(model, record)
    assert calibrated.module is not model.module and model.output_offset is None  # the given model is kept
    np.testing.assert_allclose(Predictor(model, tile_size=None).denoise(fields[0]), plain)
    shifted = Predictor(calibrated, tile_size=None).denoise(fields[0])
    np.testing.assert_allclose((plain - shifted).mean(axis=(1, 2)), [4.0, -1.5], atol=1e-3)
    assert calibrated.blend is None  # weights of 1: the network's output alone, exactly
    blended = apply_calibration(model, {"channels": {"DNA": {"output_offset": 4.0, "blend": [0.5, 1.0]},
                                                     "ER": {"output_offset": -1.5, "blend": [1.0, 1.0]}}})
    assert blended.blend.tolist() == [[0.5, 1.0], [1.0, 1.0]]
    again = apply_calibration(calibrated, {"channels": {"DNA": {"output_offset": 5.0, "blend": [1.0, 1.0]},
                                                        "ER": {"output_offset": -1.5, "blend": [1.0, 1.0]}}})
    np.testing.assert_allclose((plain - Predictor(again, tile_size=None).denoise(fields[0])).mean(axis=(1, 2)),
                               [5.0, -1.5], atol=1e-3)  # moved by the difference only
    assert apply_calibration(model, None).module is model.module  # no record: the network as it is


def test_training_run_records_its_offset_and_predict_loads_it_removed(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    run = make_run(tmp_path / "run", steps=2)
    held = [noisy_blobs(2, (96, 96), seed, dtype="float32") for seed in (11, 12)]
    raw_model = load_model(run)
    assert raw_model.output_offset is None  # no quality.json yet
    offset = _offset(raw_model, held)
    record = estimate_run_gain(run, held, ["DNA", "ER"], seed=0)
    np.testing.assert_allclose([record["channels"][c]["output_offset"] for c in ("DNA", "ER")], offset,
                               rtol=1e-4, atol=1e-4)
    assert json.loads((run / "quality.json").read_text())["channels"]["DNA"]["output_offset"] == pytest.approx(
        offset[0], rel=1e-4, abs=1e-4)
    loaded = load_model(run)
    np.testing.assert_allclose(loaded.output_offset, offset, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_offset(dataclasses.replace(loaded, blend=None), held), 0.0, atol=1e-3)
    bias = unet_output_bias(loaded.module).detach().numpy()
    np.testing.assert_allclose(unet_output_bias(raw_model.module).detach().numpy() - bias, offset / loaded.std,
                               rtol=1e-4, atol=1e-6)
    assert loaded.provenance()["output_offset"] == pytest.approx(list(offset), rel=1e-4, abs=1e-4)
    # another checkpoint than the one measured: neither offset nor blend
    other = run / "checkpoints" / "other.ckpt"
    other.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    with caplog.at_level(logging.WARNING):
        elsewhere = load_model(other)
    assert elsewhere.output_offset is None and elsewhere.blend is None
    assert any("no output-offset correction" in r.getMessage() for r in caplog.records)

