"""The harm guard in a real pipeline run: a model whose estimated gain is <= 0 dB on a channel
stops `jumpdenoise run` before predict (nothing written), and `predict.allow_worse` lets it go on.

A generated low-light plate with its ground truth (so the camera noise is known and the gain
estimate is reliable) and a training of a few steps, which leaves the network far worse than the
raw images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jumpdenoise.config import load_config
from jumpdenoise.io.synthetic import generate_plate
from jumpdenoise.pipeline import run_pipeline
from jumpdenoise.quality.gain import HarmfulModelError
from jumpdenoise.run_state import RunState

TINY_TRAIN = {"seed": 7, "epochs": 1, "patch_size": 32, "batch_size": 4, "patches_per_epoch": 8, "n_val_patches": 4,
              "model": {"depth": 2, "num_channels_init": 8},
              "trainer": {"accelerator": "cpu", "devices": 1, "num_workers": 0, "enable_progress_bar": False}}


@pytest.mark.slow
def test_run_stops_before_predict_when_a_channel_would_get_worse_and_allow_worse_goes_on(tmp_path: Path) -> None:
    source = generate_plate(tmp_path / "source", rows=1, columns=2, fields=2, channels=("DNA", "Mito"),
                            size=(64, 64), seed=5, noise="low-light", ground_truth=True, workers=1)
    workdir = tmp_path / "run"
    over = {"source": {"path": str(source)}, "paths": {"workdir": str(workdir)}, "train": TINY_TRAIN,
            "predict": {"device": "cpu"}, "executor": {"kind": "local", "workers": 1}}
    cfg = load_config(overrides=over)

    with pytest.raises(HarmfulModelError) as err:
        run_pipeline(cfg, echo=lambda s: None)
    assert "allow_worse" in str(err.value) and "train longer" in str(err.value)
    gains = json.loads((Path(cfg.paths.run_dir) / "quality.json").read_text())
    named = [ch for ch in ("DNA", "Mito") if ch in str(err.value)]
    assert named, err.value
    assert all(json.dumps(gains).find(ch) >= 0 for ch in named)
    state = RunState(workdir.absolute())
    assert state.is_done("train") and not state.is_done("predict")
    assert not Path(cfg.paths.denoised_plate).exists()  # stopped before anything was written

    allowed = load_config(overrides={**over, "predict": {"device": "cpu", "allow_worse": True}})
    run_pipeline(allowed, echo=lambda s: None)
    assert RunState(workdir.absolute()).is_done("report")
    report = (workdir / "report.md").read_text()
    assert "WORSE" in report
