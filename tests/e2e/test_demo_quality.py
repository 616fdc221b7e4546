"""`jumpdenoise run` (the demo) ends with a denoised plate closer to the truth than the raw one, per channel.

PSNR uses ``data_range`` = the truth plane's ``p99.9 - p0.1`` (the robust range of the signal;
the uint16 range 65535 would inflate every PSNR by the same constant and hide nothing, the
truth's max would let a few bright pixels set the scale). Scores are means over all fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

EXE = str(Path(sys.executable).with_name("jumpdenoise"))
#: |mean(denoised) - mean(truth)| / mean(truth) per channel and field (N2V is unbiased in
#: expectation; the demo's short training leaves offsets of up to about 1 %).
MAX_MEAN_BIAS = 0.015


def _field_planes(plate: Path, well: str, field: int) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_array(store=plate / well[0] / str(int(well[1:])) / str(field) / "0", mode="r")[:],
                      np.float64)


def demo_scores(workdir: Path) -> dict[str, dict[str, list[float]]]:
    """Per channel, per field: PSNR of the raw and denoised planes against the truth, |mean bias|."""
    truth_dir = workdir / "source" / "ground_truth"
    channels = json.loads((truth_dir / "truth.json").read_text())["channels"]
    scores: dict[str, dict[str, list[float]]] = {ch: {"raw": [], "denoised": [], "bias": []} for ch in channels}
    for path in sorted(truth_dir.glob("*.npy")):
        well, field = path.stem.split("-")
        truth = np.load(path).astype(np.float64)
        raw = _field_planes(workdir / "raw.zarr", well, int(field))
        denoised = _field_planes(workdir / "denoised.zarr", well, int(field))
        assert raw.shape == denoised.shape == truth.shape
        for c, ch in enumerate(channels):
            lo, hi = np.percentile(truth[c], [0.1, 99.9])
            scores[ch]["raw"].append(peak_signal_noise_ratio(truth[c], raw[c], data_range=hi - lo))
            scores[ch]["denoised"].append(peak_signal_noise_ratio(truth[c], denoised[c], data_range=hi - lo))
            scores[ch]["bias"].append(abs(denoised[c].mean() - truth[c].mean()) / truth[c].mean())
    return scores


@pytest.mark.slow
def test_demo_denoised_plate_beats_raw_on_every_channel(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    workdir = tmp_path / "demo"
    res = subprocess.run([EXE, "run", "--workdir", str(workdir)], capture_output=True, text=True,
                         timeout=1800, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    meta = json.loads((workdir / "source" / "ground_truth" / "truth.json").read_text())
    assert meta["noise_level"] == "low-light" and len(list((workdir / "source" / "ground_truth").glob("*.npy"))) == 12
    scores = demo_scores(workdir)
    assert list(scores) == meta["channels"]
    estimated = json.loads((workdir / "model" / "quality.json").read_text())["channels"]
    gains = {ch: float(np.mean(s["denoised"]) - np.mean(s["raw"])) for ch, s in scores.items()}
    # every channel is closer to the truth than the raw plate, by a margin, on average over the fields
    assert all(g >= 1.0 for g in gains.values()), gains
    for ch, s in scores.items():
        # ... and on every single field
        assert all(d > r for d, r in zip(s["denoised"], s["raw"])), (ch, s)
        # the gain estimated without truth (held-out fields) is within 1 dB of the true gain
        assert abs(estimated[ch]["gain_db"] - gains[ch]) <= 1.0, (ch, gains[ch], estimated[ch])
        assert max(s["bias"]) <= MAX_MEAN_BIAS, (ch, max(s["bias"]))
    report = (workdir / "report.md").read_text()
    assert "WORSE than raw" not in report, report
