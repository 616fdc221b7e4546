"""DDP on CPU with two processes (gloo): ranks draw different patches, one checkpoint set, reload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from jumpdenoise.train.run_folder import read_curves
from fixtures.plates import synthetic_plate

JUMPDENOISE = str(Path(sys.executable).parent / "jumpdenoise")


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    plate = synthetic_plate(tmp_path / "plate.zarr", wells=("A01", "A02", "B01"), n_fields=1,
                            channels=("DNA", "ER"), size=96)
    cfg = {"paths": {"workdir": str(tmp_path), "raw_plate": str(plate)},
           "train": {"patch_size": 32, "batch_size": 4, "epochs": 2, "patches_per_epoch": 32, "n_val_patches": 8,
                     "model": {"depth": 2, "num_channels_init": 8},
                     "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "num_workers": 0,
                                 "enable_progress_bar": False}}}
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([JUMPDENOISE, "train", str(path)], capture_output=True, text=True, timeout=500,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "distributed_backend=gloo" in out.stderr + out.stdout
    run = tmp_path / "model"
    rows = read_curves(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # one writer: one row per epoch
    assert int(rows[-1]["step"]) == 2 * 4  # 32 patches / (4 per batch x 2 ranks) = 4 steps per epoch
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert len(ckpts) == 3 and "last.ckpt" in ckpts
    from careamics import CAREamist

    best = run / json.loads((run / "best.json").read_text())["best"]
    careamist = CAREamist(checkpoint_path=best, work_dir=tmp_path / "w", enable_progress_bar=False)
    assert careamist.model.model.encoder is not None
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1 and state["global_step"] == 8
