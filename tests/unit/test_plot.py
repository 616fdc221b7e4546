"""Unit tests of the figure functions: real PNGs of the expected size with real content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from jumpdenoise import plot


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("L"), dtype=np.float64)


def test_before_after_rows_per_channel_and_png_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(100, 20, (3, 200, 160)).astype(np.float32)
    den = raw * 0.5 + 50
    out = tmp_path / "sub" / "ba.png"
    fig = plot.before_after(raw, den, ["DNA", "ER", "RNA"], crop_size=64, panel_size=2.0, save=out, dpi=50)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 12
    assert [ax.get_ylabel() for ax in fig.axes[::4]] == ["DNA", "ER", "RNA"]
    px = _png(out)
    assert px.shape == (3 * 2 * 50, 4 * 2 * 50)
    assert px.std() > 10  # not a blank canvas
    # a zoom panel shows exactly the requested crop
    fig2 = plot.before_after(raw[0], den[0], crop=(10, 20, 30, 40))
    assert fig2.axes[2].images[0].get_array().shape == (30, 40)


def test_before_after_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        plot.before_after(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)))
    with pytest.raises(ValueError, match="channel names"):
        plot.before_after(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), ["a"])


def test_triptych_three_panels_same_scale(tmp_path: Path) -> None:
    clean = np.tile(np.linspace(0, 255, 64), (64, 1))
    fig = plot.triptych(clean + 30, clean + 10, clean, titles=["n", "d", "c"], panel_size=2.0,
                        save=tmp_path / "t.png", dpi=40)
    # PSNR in the titles: 20*log10(255/30) and 20*log10(255/10)
    assert [ax.get_title() for ax in fig.axes] == ["n (18.59 dB)", "d (28.13 dB)", "c"]
    assert all(ax.images[0].get_clim() == (0.0, 255.0) for ax in fig.axes)
    assert _png(tmp_path / "t.png").shape == (80, 240)
    assert len(plot.triptych(clean, clean).axes) == 2


def test_training_curves_from_run_folder(tmp_path: Path) -> None:
    (tmp_path / "curves.csv").write_text("epoch,step,train_loss,val_loss,learning_rate,patches_per_s\n0,5,1.0,1.1,0.001,10\n1,10,0.8,0.9,0.0005,12\n"
                                         "2,15,0.7,,0.0001,11\n")
    fig = plot.training_curves(tmp_path, save=tmp_path / "c.png", dpi=50)
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"train_loss", "val_loss"}
    np.testing.assert_allclose(lines["val_loss"].get_ydata(), [1.1, 0.9])  # missing value skipped
    assert len(fig.axes) == 2  # learning-rate axis
    assert _png(tmp_path / "c.png").shape == (200, 400)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="empty_run/curves.csv"):
        plot.training_curves(tmp_path / "empty_run")


def test_statistics_table_from_plate_statistics(tmp_path: Path) -> None:
    stats = {"version": 1, "plate": {"DNA": {"count": 100, "min": 1, "max": 900, "mean": 123.456789, "std": 5.0,
                                             "p1": 2, "p50": 100, "p99": 800},
                                     "ER": {"count": 100, "min": 3, "max": 700, "mean": 50.0, "std": 2.0,
                                            "p1": 4, "p50": 40, "p99": 600}}}
    fig = plot.statistics_table(stats, save=tmp_path / "s.png", dpi=60, figsize=(6, 2))
    cells = fig.axes[0].tables[0].get_celld()
    texts = {key: cell.get_text().get_text() for key, cell in cells.items()}
    assert texts[(0, 0)] == "channel" and texts[(1, 0)] == "DNA" and texts[(2, 0)] == "ER"
    assert "123.5" in texts.values()
    assert _png(tmp_path / "s.png").shape == (120, 360)


def test_comparison_rows_and_image_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    clean = {k: rng.uniform(0, 255, (40, 40)) for k in ("01", "02", "03", "04")}
    noisy = {k: v + 25 for k, v in clean.items()}
    den = {k: v + 5 for k, v in clean.items()}
    fig = plot.comparison_rows(noisy, den, clean, max_rows=2, panel_size=1.0, save=tmp_path / "r.png", dpi=50)
    assert len(fig.axes) == 6
    assert fig.axes[0].get_title() == "01 noisy (20.17 dB)" and fig.axes[3].get_title().startswith("02 noisy")
    assert fig.axes[1].get_title() == "denoised (34.15 dB)"
    assert _png(tmp_path / "r.png").shape == (100, 150)
    grid = plot.image_grid(clean, n=3, columns=2, panel_size=1.0, save=tmp_path / "g.png", dpi=50)
    assert [ax.get_title() for ax in grid.axes[:3]] == ["01", "02", "03"] and not grid.axes[3].axison
    assert _png(tmp_path / "g.png").shape == (100, 100)


def test_plate_figures_pick_channels_by_name(tmp_path: Path) -> None:
    import xarray as xr

    rng = np.random.default_rng(4)
    raw = xr.DataArray(rng.normal(100, 10, (2, 1, 3, 64, 64)), dims=("well", "field", "c", "y", "x"),
                       coords={"well": ["A01", "A02"], "field": [0], "c": ["Mito", "DNA", "ER"]}, name="P1")
    # the denoised plate holds fewer channels, in another order
    den = xr.DataArray(np.stack([raw.sel(c="ER").values, raw.sel(c="DNA").values * 0 + 7], axis=2),
                       dims=("well", "field", "c", "y", "x"),
                       coords={"well": ["A01", "A02"], "field": [0], "c": ["ER", "DNA"]}, name="P1")
    fig = plot.plate_before_after(raw, den, well="A02", crop_size=16, panel_size=1.0, save=tmp_path / "p.png", dpi=40)
    assert [ax.get_ylabel() for ax in fig.axes[::4]] == ["ER", "DNA"]
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), raw.sel(well="A02", c="ER").values[0])
    assert np.all(fig.axes[5].images[0].get_array() == 7)  # DNA row, denoised panel
    assert _png(tmp_path / "p.png").shape == (80, 160)
    grid = plot.plate_channels(raw, well=1, columns=2, panel_size=1.0, save=tmp_path / "c.png", dpi=40)
    assert [ax.get_title() for ax in grid.axes[:3]] == ["Mito", "DNA", "ER"]
    assert "well A02, field 0" in grid.get_suptitle()
    assert _png(tmp_path / "c.png").shape == (80, 80)


def test_crop_panels_share_one_display_range_and_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    truth = np.tile(np.linspace(100, 1000, 300), (240, 1))
    raw = truth + rng.normal(0, 80, truth.shape)
    out = tmp_path / "crops.png"
    fig = plot.crop_panels(raw, truth * 0.5, truth, titles=("raw 20 dB", "denoised", "truth"), crop_size=64,
                           panel_size=2.0, save=out, dpi=50)
    assert [ax.get_title() for ax in fig.axes] == ["raw 20 dB", "denoised", "truth"]
    limits = {ax.images[0].get_clim() for ax in fig.axes}
    assert len(limits) == 1  # same display range on every panel
    assert fig.axes[0].images[0].get_array().shape == (64, 64)
    px = _png(out)
    assert px.shape == (100, 300) and px.std() > 10
    two = plot.crop_panels(raw, truth, crop_size=32)
    assert len(two.axes) == 2
    with pytest.raises(ValueError, match="one shape"):
        plot.crop_panels(raw, truth[:10])
