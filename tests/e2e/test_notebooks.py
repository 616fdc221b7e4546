"""Execute the three notebooks with papermill on small settings; check the figures they save.

Each notebook runs in its own kernel (``python3``, resolved to this interpreter by jupyter_client),
with ``notebooks/`` as working directory and outputs in a temporary folder. A failing cell fails the test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import papermill

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
DPI = 50


def _execute(name: str, tmp_path: Path, **parameters) -> Path:
    out_dir = tmp_path / "out"
    executed = tmp_path / name
    papermill.execute_notebook(str(NOTEBOOKS / name), str(executed), cwd=str(NOTEBOOKS), kernel_name="python3",
                               parameters={"out_dir": str(out_dir), "dpi": DPI, **parameters},
                               progress_bar=False, log_output=False, execution_timeout=600)
    return out_dir


def _check_figures(figures: Path, expected: dict[str, tuple[float, float]]) -> None:
    """Every expected PNG exists, decodes, has ``figsize * DPI`` pixels and is not blank."""
    for name, (w_in, h_in) in expected.items():
        path = figures / name
        assert path.is_file(), f"missing figure {path}"
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert img.size == (round(w_in * DPI), round(h_in * DPI)), name
            px = np.asarray(img.convert("L"), dtype=np.float64)
        assert px.std() > 5, f"{name} looks blank"


@pytest.mark.slow
def test_single_image_demo_notebook(tmp_path: Path) -> None:
    out = _execute("single_image_demo.ipynb", tmp_path, schedule="ci")
    _check_figures(out / "figures", {"01_noisy_clean.png": (12, 6), "02_training_curves.png": (10, 4),
                                     "03_noisy_denoised_clean.png": (18, 6), "04_zoom.png": (18, 4.5)})


@pytest.mark.slow
def test_bsd68_notebook(tmp_path: Path) -> None:
    out = _execute("bsd68_train_predict.ipynb", tmp_path, schedule="ci")
    _check_figures(out / "figures", {"noisy_train.png": (12, 3), "training_curves.png": (8, 4),
                                     "noisy_denoised_clean.png": (10.5, 7)})
    table = (out / "bsd_scores.csv").read_text().splitlines()
    assert table[0].startswith("image,noisy_psnr,denoised_psnr") and table[-1].startswith("mean,")
    assert len(table) == 1 + 2 + 1  # header, 2 test images (ci schedule), mean


@pytest.mark.slow
def test_jump_notebook(tmp_path: Path) -> None:
    out = _execute("jump_train_predict.ipynb", tmp_path, schedule="ci")
    _check_figures(out / "figures", {"raw_channels.png": (10.5, 7), "raw_statistics.png": (10, 3),
                                     "training_curves.png": (8, 4), "raw_vs_denoised.png": (12, 12),
                                     "denoised_statistics.png": (10, 3)})
    assert (out / "model" / "curves.csv").is_file() and (out / "denoised.zarr" / "zarr.json").is_file()
