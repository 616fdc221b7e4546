"""Unit tests of the BSD protocol pieces that need no training: reading, noise, metrics, TTA, report."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jumpdenoise import bsd
from jumpdenoise.demo_image import make_synthetic_sets
from jumpdenoise.errors import ImageError, JumpDenoiseError

SHARED_BSD = Path(__file__).resolve().parents[3] / "shared" / "data" / "bsd"


def _write_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr).save(path)


def test_load_png_folder_reads_uint8_as_float32_in_name_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    imgs = {name: rng.integers(0, 256, (20, 30), dtype=np.uint8) for name in ("b", "a", "c")}
    for name, arr in imgs.items():
        _write_png(tmp_path / f"{name}.png", arr)
    loaded = bsd.load_png_folder(tmp_path)
    assert list(loaded) == ["a", "b", "c"]
    for name, arr in loaded.items():
        assert arr.dtype == np.float32 and arr.shape == (20, 30)
        np.testing.assert_array_equal(arr, imgs[name].astype(np.float32))
    assert list(bsd.load_png_folder(tmp_path, limit=2)) == ["a", "b"]


def test_load_png_folder_errors_name_the_folder_or_file(tmp_path: Path) -> None:
    with pytest.raises(JumpDenoiseError, match="not found"):
        bsd.load_png_folder(tmp_path / "missing")
    with pytest.raises(JumpDenoiseError, match=r"no \*\.png"):
        bsd.load_png_folder(tmp_path)
    _write_png(tmp_path / "rgb.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ImageError, match="rgb.png.*mode RGB"):
        bsd.load_png_folder(tmp_path)
    (tmp_path / "rgb.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="rgb.png.*cannot read"):
        bsd.read_png(tmp_path / "rgb.png")


def test_noise_is_seeded_unclipped_and_has_the_requested_sigma() -> None:
    clean = {"x": np.full((256, 256), 5.0, np.float32), "y": np.full((256, 256), 250.0, np.float32)}
    a = bsd.noisy_set(clean, sigma=25, seed=7)
    b = bsd.noisy_set(clean, sigma=25, seed=7)
    c = bsd.noisy_set(clean, sigma=25, seed=8)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], c["x"])
    assert not np.array_equal(a["x"] - 5.0, a["y"] - 250.0)  # one generator, fresh draws per image
    assert a["x"].dtype == np.float32
    assert a["x"].min() < 0 and a["y"].max() > 255  # unclipped
    noise = a["x"] - 5.0
    assert abs(noise.std() - 25) < 0.3 and abs(noise.mean()) < 0.3
    # PSNR of unclipped sigma-25 noise is 20*log10(255/25) = 20.17 dB whatever the image
    assert bsd.psnr(clean["x"], a["x"]) == pytest.approx(20.17, abs=0.05)


def test_psnr_and_ssim_known_values() -> None:
    clean = np.zeros((64, 64), np.uint8)
    assert bsd.psnr(clean, np.full((64, 64), 25.0)) == pytest.approx(10 * np.log10(255**2 / 625))
    rng = np.random.default_rng(0)
    img = np.tile(np.linspace(50, 200, 64), (64, 1))  # smooth: sigma-25 noise destroys its structure
    assert bsd.ssim(img, img) == pytest.approx(1.0)
    assert bsd.ssim(img, img + rng.normal(0, 25, img.shape)) < 0.5


def test_dihedral_average_inverts_every_transform() -> None:
    rng = np.random.default_rng(1)
    rect = rng.normal(size=(13, 21)).astype(np.float32)
    # an equivariant prediction comes back unchanged, also for a non-square image
    np.testing.assert_allclose(bsd.dihedral_average(lambda a: 2 * a, rect), 2 * rect, rtol=1e-6)
    # a prediction adding the column index: the 8 orientations average it to a constant (n-1)/2
    sq = rng.normal(size=(16, 16))
    out = bsd.dihedral_average(lambda a: a + np.arange(a.shape[1])[None, :], sq)
    np.testing.assert_allclose(out, sq + 7.5, rtol=1e-5, atol=1e-5)


def test_evaluate_and_report_table_and_files(tmp_path: Path) -> None:
    clean = {"a": np.zeros((32, 32), np.float32), "b": np.full((32, 32), 100, np.float32)}
    noisy = {"a": clean["a"] + 25, "b": clean["b"] - 25}
    den = {"a": clean["a"] + 5, "b": clean["b"] + 10}
    scores = bsd.evaluate(clean, noisy, den)
    assert [s.name for s in scores] == ["a", "b"]
    assert scores[0].denoised_psnr == pytest.approx(10 * np.log10(255**2 / 25))
    assert scores[1].psnr_gain == pytest.approx(20 * np.log10(25 / 10))
    report = bsd.BsdReport(scores=scores, sigma=25, seed=0, tta=False, epochs=1, n_train=1, run_dir=None,
                           train_seconds=1.0, predict_seconds=0.5)
    rows = report.table()
    assert rows[-1]["image"] == "mean"
    assert rows[-1]["denoised_psnr"] == pytest.approx((scores[0].denoised_psnr + scores[1].denoised_psnr) / 2)
    report.save(tmp_path)
    with open(tmp_path / "bsd_scores.csv") as fh:
        got = list(csv.DictReader(fh))
    assert [r["image"] for r in got] == ["a", "b", "mean"]
    assert float(got[2]["noisy_psnr"]) == pytest.approx(report.mean_noisy_psnr)
    summary = json.loads((tmp_path / "bsd_summary.json").read_text())
    assert summary["n_test"] == 2 and summary["mean_denoised_psnr"] == pytest.approx(report.mean_denoised_psnr)
    assert list(report.to_frame().index) == ["a", "b", "mean"]


def test_evaluate_rejects_missing_or_misshaped_images() -> None:
    clean = {"a": np.zeros((8, 8), np.float32)}
    with pytest.raises(JumpDenoiseError, match="no denoised image for test image 'a'"):
        bsd.evaluate(clean, clean, {})
    with pytest.raises(JumpDenoiseError, match="shape"):
        bsd.evaluate(clean, clean, {"a": np.zeros((8, 9))})


def test_synthetic_sets_are_grayscale_pngs_of_the_requested_size(tmp_path: Path) -> None:
    train, test = make_synthetic_sets(tmp_path, n_train=4, n_test=2, train_size=96, test_size=128)
    tr, te = bsd.load_png_folder(train), bsd.load_png_folder(test)
    assert len(tr) == 4 and len(te) == 2
    assert all(a.shape == (96, 96) for a in tr.values()) and all(a.shape == (128, 128) for a in te.values())
    assert all(a.std() > 5 for a in [*tr.values(), *te.values()])  # real picture content, not flat
    t2, e2, origin = bsd.resolve_bsd_sets(tmp_path / "nowhere", tmp_path / "work")
    assert origin == "synthetic" and len(list(t2.glob("*.png"))) == 20


def test_shared_set12_noisy_psnr_matches_the_reference() -> None:
    if not SHARED_BSD.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared BSD data missing at {SHARED_BSD} (required when CI=true)")
        pytest.skip("shared BSD data not present")
    train, test, origin = bsd.resolve_bsd_sets(SHARED_BSD.parent, "/nonexistent")
    assert origin == "shared" and test.name == "set12"
    clean = bsd.load_png_folder(test)
    assert len(clean) == 12
    noisy = bsd.noisy_set(clean, 25, seed=1)
    mean = np.mean([bsd.psnr(clean[n], noisy[n]) for n in clean])
    assert mean == pytest.approx(20.17, abs=0.05)


def test_schedules_and_demo_helpers() -> None:
    from jumpdenoise import demo_image as demo

    ci = bsd.bsd_training_schedule("ci", epochs=5, patch_size=None, model={"depth": 3})
    assert ci["n_train"] == 20 and ci["train"]["epochs"] == 5 and ci["train"]["patch_size"] == 32
    assert ci["train"]["model"] == {"num_channels_init": 16, "depth": 3}  # dicts are merged
    assert bsd.SCHEDULES["ci"]["train"]["model"] == {"num_channels_init": 16}  # and not changed in place
    with pytest.raises(JumpDenoiseError, match="unknown schedule 'nope'"):
        bsd.bsd_training_schedule("nope")
    assert demo.image_training_schedule("ci")["size"] == 128
    clean = demo.demo_image("camera", size=128)
    assert clean.shape == (128, 128) and clean.dtype == np.float32 and 0 <= clean.min() < clean.max() <= 255
    assert demo.demo_image("astronaut").ndim == 2  # colour images become grayscale
    noisy = demo.make_noisy(clean, sigma=25, seed=0)
    np.testing.assert_array_equal(noisy, demo.make_noisy(clean, sigma=25, seed=0))
    table = demo.noisy_vs_denoised_table(clean, noisy, clean + 5)
    assert table.loc["noisy", "PSNR (dB)"] == pytest.approx(20.17, abs=0.1)
    assert table.loc["denoised", "PSNR (dB)"] == pytest.approx(34.15, abs=0.01)
    assert table.loc["gain", "PSNR (dB)"] == pytest.approx(34.15 - table.loc["noisy", "PSNR (dB)"], abs=0.01)
    with pytest.raises(JumpDenoiseError, match="no image 'nope'"):
        demo.demo_image("nope")
    refs = bsd.reference_table({"mine": 21.234})
    assert refs.loc["N2V paper", "PSNR (dB)"] == 27.71 and refs.loc["mine", "PSNR (dB)"] == 21.23


def test_budget_lr_warms_up_then_follows_a_cosine_to_zero_at_the_deadline() -> None:
    from jumpdenoise.bsd_schedule import budget_lr

    peak, budget = 1e-3, 600.0  # warm-up: the first 5 % = 30 s
    assert budget_lr(0, budget, peak) == pytest.approx(peak / 100)
    assert budget_lr(15, budget, peak) == pytest.approx(peak * (0.01 + 0.99 * 0.5))
    assert budget_lr(30, budget, peak) == pytest.approx(peak)
    assert budget_lr(30 + 570 / 2, budget, peak) == pytest.approx(peak / 2)
    assert budget_lr(30 + 570 / 3, budget, peak) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi / 3)))
    assert budget_lr(599.999, budget, peak) == pytest.approx(0, abs=1e-9)
    assert budget_lr(600, budget, peak) == 0 and budget_lr(900, budget, peak) == 0
    times = np.linspace(30, 600, 200)
    assert np.all(np.diff([budget_lr(t, budget, peak) for t in times]) < 0)  # decays all the way
    assert budget_lr(5, 10, peak, warmup_fraction=0) == pytest.approx(peak / 2)
    with pytest.raises(JumpDenoiseError, match="budget must be positive"):
        budget_lr(0, 0)
    with pytest.raises(JumpDenoiseError, match="warmup_fraction"):
        budget_lr(0, 10, warmup_fraction=1)


def test_wall_clock_cosine_sets_the_rate_of_a_real_optimizer_from_the_clock() -> None:
    import time

    import torch

    from jumpdenoise.bsd_schedule import WallClockCosine, budget_lr

    net = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.5)

    class Trainer:  # the one attribute of lightning's Trainer the callback reads
        optimizers = [opt]

    cb = WallClockCosine(budget_s=2.0, peak_lr=1e-2)
    cb.on_train_start(Trainer(), None)
    cb.on_train_batch_start(Trainer(), None, None, 0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4, rel=0.2)  # start of the warm-up
    cb.t0 = time.monotonic() - 0.3  # 0.3 s into the budget, on the callback's own clock
    cb.on_train_batch_start(Trainer(), None, None, 1)
    elapsed_at_most = time.monotonic() - cb.t0
    lr = opt.param_groups[0]["lr"]
    assert budget_lr(elapsed_at_most, 2.0, 1e-2) <= lr <= budget_lr(0.3, 2.0, 1e-2)  # past the warm-up: falling
    cb.t0 -= 5  # past the deadline
    cb.on_train_batch_start(Trainer(), None, None, 2)
    assert opt.param_groups[0]["lr"] == 0


def test_budget_schedule_settings_per_device_and_its_deadline_is_required(tmp_path: Path) -> None:
    cpu = bsd.bsd_training_schedule("budget", device="cpu")["train"]
    cuda = bsd.bsd_training_schedule("budget", device="cuda")["train"]
    assert cpu["trainer"]["precision"] == "32-true" and cuda["trainer"]["precision"] == "bf16-mixed"
    assert cuda["model"]["num_channels_init"] > cpu["model"]["num_channels_init"]
    assert cuda["batch_size"] > cpu["batch_size"] and cpu["n2v2"] is False is cuda["n2v2"]
    assert bsd.bsd_training_schedule("budget", device="cpu", batch_size=4)["train"]["batch_size"] == 4
    with pytest.raises(JumpDenoiseError, match="budget schedule knows cpu, cuda and auto"):
        bsd.bsd_training_schedule("budget", device="mps")
    with pytest.raises(JumpDenoiseError, match="unknown schedule 'nope'.*'budget'"):
        bsd.bsd_training_schedule("nope")
    train, test = make_synthetic_sets(tmp_path / "sets", n_train=2, n_test=1, train_size=64, test_size=64)
    with pytest.raises(JumpDenoiseError, match="budget schedule needs --max-minutes"):
        bsd.run_bsd(train, test, schedule_name="budget", device="cpu", out_dir=tmp_path / "out")


def test_with_deadline_adds_the_time_limit_and_the_budget_learning_rate() -> None:
    from jumpdenoise.bsd_schedule import WallClockCosine, with_deadline

    short = bsd.bsd_training_schedule("short")["train"]
    assert with_deadline(short, "short", None) == short
    timed = with_deadline(short, "short", 1.5)
    assert timed["trainer"]["extra"] == {"max_time": {"seconds": 90}} and "callbacks" not in timed
    assert "trainer" not in short  # the schedule's dict is left as it was
    budget = with_deadline(bsd.bsd_training_schedule("budget", device="cpu")["train"], "budget", 0.5)
    (callback,) = budget["callbacks"]
    assert isinstance(callback, WallClockCosine) and callback.budget_s == 30
    assert callback.peak_lr == budget["optimizer"]["lr"]
    assert budget["trainer"]["extra"]["max_time"] == {"seconds": 30} and budget["trainer"]["precision"] == "32-true"
