"""Short CPU trainings on a small generated plate: loss falls, checkpoints reload, resume, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jumpdenoise.config import load_config
from jumpdenoise.train.run_folder import RunFolder, epochs_done, read_curves
from fixtures.plates import synthetic_plate

#: tiny settings: small UNet, 32-px patches, few steps
TINY = {"channels": ["DNA", "ER"], "patch_size": 32, "batch_size": 8, "patches_per_epoch": 96,
        "n_val_patches": 32, "model": {"depth": 2, "num_channels_init": 8},
        "optimizer": {"lr": 2e-3}, "n2v": {"masked_pixel_percentage": 2.0},
        "trainer": {"accelerator": "cpu", "devices": 1, "num_workers": 0, "enable_progress_bar": False}}
JUMPDENOISE = str(Path(sys.executable).parent / "jumpdenoise")


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_plate(tmp_path_factory.mktemp("plate") / "plate.zarr", wells=("A01", "A02", "B01"),
                           n_fields=2, channels=("DNA", "ER", "RNA"), size=96)


def _write_config(tmp_path: Path, plate: Path, epochs: int, **extra) -> Path:
    cfg = {"paths": {"workdir": str(tmp_path), "raw_plate": str(plate)}, "train": {**TINY, "epochs": epochs, **extra}}
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture(scope="module")
def trained(plate: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jumpdenoise.stages.train import train

    tmp = tmp_path_factory.mktemp("run")
    return train(load_config(_write_config(tmp, plate, epochs=4)))


def test_validation_loss_falls_and_run_folder_is_complete(trained: Path) -> None:
    rows = read_curves(trained)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    val = [float(r["val_loss"]) for r in rows]
    assert val[-1] < val[0], val
    assert all(float(r["patches_per_s"]) > 0 and float(r["learning_rate"]) > 0 for r in rows)
    for name in ("config.yaml", "careamics_config.yaml", "normalization.json", "split.json", "curves.csv",
                 "curves.png", "train.log", "best.json"):
        assert (trained / name).is_file(), name
    ckpts = sorted(p.name for p in (trained / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and len(ckpts) == 4  # top 3 by val_loss + last
    best = json.loads((trained / "best.json").read_text())
    assert best["epochs_done"] == 4 and best["val_loss"] == pytest.approx(min(val), rel=1e-4)
    log = (trained / "train.log").read_text()
    assert "epoch   3" in log and "patches/s" in log
    assert json.loads((trained / "split.json").read_text())["mode"] == "well"


def test_checkpoint_reloads_in_careamics_and_our_loader(trained: Path) -> None:
    from careamics import CAREamist

    from jumpdenoise.predict.model import load_model, read_checkpoint
    from jumpdenoise.train.run_folder import run_checkpoint

    ckpt = run_checkpoint(trained)
    state = read_checkpoint(ckpt)["state_dict"]
    assert all(k.startswith("model.") for k in state)
    loaded = load_model(trained)
    assert loaded.checkpoint == ckpt and loaded.channels == ["DNA", "ER"]
    x = np.load(trained / "example_input.npy").astype(np.float32)
    m = loaded.mean.astype(np.float32)[None, :, None, None]
    s = loaded.std.astype(np.float32)[None, :, None, None]
    norm = json.loads((trained / "normalization.json").read_text())
    with torch.no_grad():
        ours = loaded.module(torch.from_numpy((x - m) / s)).numpy() * s + m
    careamist = CAREamist(checkpoint_path=ckpt, work_dir=trained.parent / "careamist", enable_progress_bar=False)
    theirs = careamist.predict(x, data_type="array", axes="SCYX")
    theirs = np.asarray(theirs[0][0] if isinstance(theirs, tuple) else theirs[0])
    # the same network, less the output offset training measured and our loader removes (quality.json)
    offset = np.asarray(loaded.output_offset, np.float32).reshape(-1, 1, 1)
    assert np.all(np.abs(offset) > 0)
    np.testing.assert_allclose(np.squeeze(ours), np.squeeze(theirs) - offset,
                               rtol=1e-4, atol=1e-2)
    assert list(careamist.config.data_config.normalization.input_means) == pytest.approx(norm["mean"])


def test_finished_run_plans_nothing(trained: Path) -> None:
    from jumpdenoise.stages.train import plan

    cfg = load_config(trained.parent / "config.yaml")
    assert plan(cfg) == []
    assert plan(load_config(trained.parent / "config.yaml", overrides={"train": {"epochs": 5}}))


@pytest.mark.slow
def test_resume_after_sigkill_continues_at_the_right_epoch(plate: Path, tmp_path: Path) -> None:
    cfg = _write_config(tmp_path, plate, epochs=5)
    run = tmp_path / "model"
    proc = subprocess.Popen([JUMPDENOISE, "train", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and epochs_done(RunFolder(run)) < 2 and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "training ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"]
    assert 1 <= saved < 4
    out = subprocess.run([JUMPDENOISE, "train", str(cfg)], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"epoch {saved:>3d} " not in out.stderr  # epochs already checkpointed are not trained again
    assert f"epoch {saved + 1:>3d} " in out.stderr
    assert [int(r["epoch"]) for r in read_curves(run)] == [0, 1, 2, 3, 4]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    steps = 96 // 8
    assert ckpt["epoch"] == 4 and ckpt["global_step"] == 5 * steps
    assert "resuming from" in (run / "train.log").read_text()


@pytest.mark.slow
def test_export_bmz_reloads_and_predicts_like_the_checkpoint(trained: Path, tmp_path: Path, monkeypatch) -> None:
    import tempfile

    from careamics import CAREamist

    from jumpdenoise.predict.model import load_model
    from jumpdenoise.train.export import export_run

    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    zip_path = export_run(trained, tmp_path / "model.zip")
    assert zip_path.is_file()
    assert not list(system_tmp.iterdir()), "the export left files in the temporary folder"
    x = np.load(trained / "example_input.npy").astype(np.float32)
    # CAREamics' own loader unpacks into the (patched, per-test) temporary folder and leaves it there
    bmz = CAREamist(bmz_path=zip_path, work_dir=tmp_path / "w", enable_progress_bar=False)
    assert list(bmz.config.data_config.normalization.input_means) == pytest.approx(
        json.loads((trained / "normalization.json").read_text())["mean"])
    pred = bmz.predict(x, data_type="array", axes="SCYX")
    pred = np.squeeze(np.asarray(pred[0][0] if isinstance(pred, tuple) else pred[0]))
    loaded = load_model(trained)
    m = loaded.mean.astype(np.float32)[None, :, None, None]
    s = loaded.std.astype(np.float32)[None, :, None, None]
    with torch.no_grad():
        ours = np.squeeze(loaded.module(torch.from_numpy((x - m) / s)).numpy() * s + m)
    np.testing.assert_allclose(pred, ours, rtol=1e-4, atol=1e-2)
    import zipfile

    rdf = next(n for n in zipfile.ZipFile(zip_path).namelist() if n.endswith(".yaml") and "rdf" in n)
    text = zipfile.ZipFile(zip_path).read(rdf).decode()
    assert "DNA" in text and "ER" in text


def test_channels_last_module_keeps_careamics_parameter_names(trained: Path) -> None:
    """Channels-last weights change how training runs, not the state dict (what checkpoints hold)."""
    from jumpdenoise.train.module import JumpN2VModule

    module = JumpN2VModule.load_from_checkpoint(trained / "checkpoints" / "last.ckpt", map_location="cpu")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    module.configure_model()
    assert module.model.encoder.encoder_blocks[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    after = module.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_unmasked_batches_are_refused() -> None:
    from jumpdenoise.train.module import JumpN2VModule

    with pytest.raises(ValueError, match="masked by the data workers"):
        JumpN2VModule._unpack(torch.zeros(2, 2, 8, 8))
