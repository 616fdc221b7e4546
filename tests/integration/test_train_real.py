"""Short CPU training on the real cpg0000 field (JUMP pilot, 1080x1080, six channels)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jumpdenoise.config import load_config
from jumpdenoise.train.run_folder import read_curves
from shared_data import shared_data

FIELD = shared_data("jump", "cpg0000_BR00117010")

pytestmark = pytest.mark.skipif(not FIELD.is_dir(), reason="cpg0000 sample field not available")


@pytest.fixture(scope="module")
def real_plate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tifffile

    from fixtures.plates import write_plate

    names = json.loads((FIELD / "channel_table.json").read_text())
    files = sorted((FIELD / "Images").glob("r01c01f01p01-ch*sk1fk1fl1.tiff"),
                   key=lambda p: int(p.name.split("-ch")[1].split("sk")[0]))
    channels = [names[f"ch{p.name.split('-ch')[1].split('sk')[0]}"] for p in files]
    data = np.stack([tifffile.imread(p) for p in files])
    return write_plate(tmp_path_factory.mktemp("real") / "BR00117010.zarr", {("A01", 0): data}, channels,
                       name="BR00117010")


@pytest.mark.slow
def test_training_on_the_real_field(real_plate: Path, tmp_path: Path) -> None:
    from jumpdenoise.io.ngff import plate_info
    from jumpdenoise.stages.train import train

    info = plate_info(real_plate)
    assert {"DNA", "ER", "RNA", "AGP", "Mito"} <= set(info.channels) and info.shape_yx == (1080, 1080)
    cfg = load_config(overrides={
        "paths": {"workdir": str(tmp_path), "raw_plate": str(real_plate)},
        "train": {"channels": ["DNA", "ER", "RNA", "AGP"], "patch_size": 32, "batch_size": 8, "epochs": 3,
                  "patches_per_epoch": 96, "n_val_patches": 32, "model": {"depth": 2, "num_channels_init": 8},
                  "optimizer": {"lr": 2e-3}, "n2v": {"masked_pixel_percentage": 2.0},
                  "trainer": {"accelerator": "cpu", "devices": 1, "num_workers": 1,
                              "enable_progress_bar": False}}})
    run = train(cfg)
    val = [float(r["val_loss"]) for r in read_curves(run)]
    assert len(val) == 3 and val[-1] < val[0], val
    split = json.loads((run / "split.json").read_text())
    assert split["mode"] == "region" and split["val_rows"] == [972, 1080]  # one field: bottom band validates
    norm = json.loads((run / "normalization.json").read_text())
    dna = info.statistics["plate"]["DNA"]
    assert norm["channels"] == ["DNA", "ER", "RNA", "AGP"] and norm["mean"][0] == pytest.approx(dna["mean"])
