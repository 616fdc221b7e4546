"""The harm guard in a real pipeline run.

A generated low-light plate with its ground truth (so the camera noise is known and the gain
estimates are reliable) and a training of a few steps, which leaves the network's own output far
worse than the raw images. Predict blends it with the raw image by the weight measured after
training, so the written plate is still no worse than the raw one against the truth, and the run
goes on. A model that adds nothing (weight 0: the written channel would be the raw image) stops
the run before predict unless ``predict.allow_worse`` is set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jumpdenoise.config import load_config
from jumpdenoise.io.synthetic import generate_plate
from jumpdenoise.pipeline import run_pipeline
from jumpdenoise.quality.guard import HarmfulModelError

TINY_TRAIN = {"seed": 7, "epochs": 1, "patch_size": 32, "batch_size": 4, "patches_per_epoch": 8, "n_val_patches": 4,
              "model": {"depth": 2, "num_channels_init": 8},
              "trainer": {"accelerator": "cpu", "devices": 1, "num_workers": 0, "enable_progress_bar": False}}


def _psnr_gain(workdir: Path, truth_dir: Path, channels: tuple[str, ...]) -> dict[str, float]:
    import numpy as np
    import zarr

    from jumpdenoise.quality.metrics import psnr

    gains: dict[str, list[float]] = {ch: [] for ch in channels}
    for path in sorted(truth_dir.glob("*.npy")):
        well, field = path.stem.split("-")
        truth = np.load(path).astype(np.float64)
        planes = [np.asarray(zarr.open_array(store=workdir / name / well[0] / str(int(well[1:])) / field / "0",
                                             mode="r")[:], np.float64) for name in ("raw.zarr", "denoised.zarr")]
        for c, ch in enumerate(channels):
            lo, hi = np.percentile(truth[c], [0.1, 99.9])
            gains[ch].append(psnr(planes[1][c], truth[c], hi - lo) - psnr(planes[0][c], truth[c], hi - lo))
    return {ch: float(np.mean(g)) for ch, g in gains.items()}


@pytest.mark.slow
def test_barely_trained_network_is_blended_so_no_channel_gets_worse(tmp_path: Path) -> None:
    channels = ("DNA", "Mito")
    source = generate_plate(tmp_path / "source", rows=1, columns=2, fields=2, channels=channels,
                            size=(64, 64), seed=5, noise="low-light", ground_truth=True, workers=1)
    workdir = tmp_path / "run"
    over = {"source": {"path": str(source)}, "paths": {"workdir": str(workdir)}, "train": TINY_TRAIN,
            "predict": {"device": "cpu"}, "executor": {"kind": "local", "workers": 1}}
    cfg = load_config(overrides=over)
    run_pipeline(cfg, echo=lambda s: None)
    quality = json.loads((Path(cfg.paths.run_dir) / "quality.json").read_text())["channels"]
    assert any(quality[ch]["network_gain_db"] < 0 for ch in channels), quality  # the network alone: worse
    true_gain = _psnr_gain(workdir, source.parent / "ground_truth", channels)
    for ch in channels:
        assert all(0 <= w <= 1 for w in quality[ch]["blend"]) and min(quality[ch]["blend"]) < 1
        assert true_gain[ch] >= -0.05, (ch, true_gain, quality[ch])  # what was written: not worse
        assert quality[ch]["gain_db"] == pytest.approx(true_gain[ch], abs=1.0)
    assert "WORSE than raw" not in (workdir / "report.md").read_text()


def test_a_model_that_adds_nothing_stops_the_run_before_predict(tmp_path: Path) -> None:
    """quality.json of a model whose blend weight is 0 on DNA (it passes its input through)."""
    run = tmp_path / "run" / "model"
    run.mkdir(parents=True)
    (run / "normalization.json").write_text(json.dumps({"channels": ["DNA", "Mito"], "mean": [0, 0], "std": [1, 1]}))
    (run / "quality.json").write_text(json.dumps({"version": 2, "checkpoint": "checkpoints/best.ckpt", "channels": {
        "DNA": {"gain_db": 0.0, "blend": [0.0, 0.0], "reliable": True},
        "Mito": {"gain_db": 4.1, "blend": [0.1, 0.7], "reliable": True}}}))
    cfg = load_config(overrides={"paths": {"workdir": str(tmp_path / "run"), "run_dir": str(run)}})
    from jumpdenoise.quality.guard import check_gain_before_predict

    with pytest.raises(HarmfulModelError) as err:
        check_gain_before_predict(cfg)
    assert "DNA (+0.0 dB)" in str(err.value) and "Mito" not in str(err.value) and "allow_worse" in str(err.value)
    allowed = cfg.model_copy(update={"predict": cfg.predict.model_copy(update={"allow_worse": True})})
    assert check_gain_before_predict(allowed) is None
