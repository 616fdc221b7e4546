"""Scores of the BSD68 protocol: PSNR/SSIM per image, the reference PSNRs, and the run report.

:func:`evaluate` scores noisy and denoised images against the clean ones (PSNR with
``data_range=255``, i.e. ``10*log10(255^2/MSE)``, and SSIM, both from scikit-image);
:class:`BsdReport` holds the scores of one run of :func:`jumpdenoise.bsd.run_bsd` with their
means, settings and timings, and saves them as ``bsd_scores.csv`` and ``bsd_summary.json``.
Everything here is re-exported by :mod:`jumpdenoise.bsd`.

pandas and scikit-image are imported only inside the functions that use them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from jumpdenoise.errors import JumpDenoiseError

__all__ = [
    "REFERENCE_PSNR", "BsdImageScore", "BsdReport", "evaluate", "psnr", "reference_table", "score_table", "ssim",
]

#: Reference PSNRs (dB) on BSD68 at sigma 25, quoted for comparison only.
REFERENCE_PSNR = {
    "noisy input (20*log10(255/25))": 20.17,
    "N2V paper": 27.71,
    "n2v reference notebook": 27.81,
    "n2v reference notebook, TTA": 27.88,
    "CAREamics example": 26.30,
    "CAREamics 0.3.5, BSD68 settings, 4 min on an H200 (this project)": 26.37,
    "same, TTA": 26.53,
}


def psnr(clean: np.ndarray, estimate: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB, ``10*log10(data_range^2 / MSE)`` (scikit-image), both images as float64."""
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(np.asarray(clean, np.float64), np.asarray(estimate, np.float64),
                                         data_range=data_range))


def ssim(clean: np.ndarray, estimate: np.ndarray, data_range: float = 255.0) -> float:
    """Structural similarity (scikit-image defaults: 7x7 uniform window) with a fixed data range."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(clean, np.float64), np.asarray(estimate, np.float64),
                                       data_range=data_range))


@dataclass
class BsdImageScore:
    """Scores of one test image: the noisy input and the denoised output against the clean image."""

    name: str
    shape: tuple[int, int]
    noisy_psnr: float
    denoised_psnr: float
    noisy_ssim: float
    denoised_ssim: float

    @property
    def psnr_gain(self) -> float:
        """Denoised minus noisy PSNR (dB)."""
        return self.denoised_psnr - self.noisy_psnr


def evaluate(clean: Mapping[str, np.ndarray], noisy: Mapping[str, np.ndarray],
             denoised: Mapping[str, np.ndarray], data_range: float = 255.0) -> list[BsdImageScore]:
    """Score every image named in ``clean`` (PSNR and SSIM of the noisy and of the denoised image)."""
    rows = []
    for name in clean:
        c = clean[name]
        for what, arr in (("noisy", noisy.get(name)), ("denoised", denoised.get(name))):
            if arr is None:
                raise JumpDenoiseError(f"no {what} image for test image {name!r}")
            if arr.shape != c.shape:
                raise JumpDenoiseError(f"{what} image {name!r} has shape {arr.shape}, clean has {c.shape}")
        rows.append(BsdImageScore(
            name=name, shape=tuple(c.shape),
            noisy_psnr=psnr(c, noisy[name], data_range), denoised_psnr=psnr(c, denoised[name], data_range),
            noisy_ssim=ssim(c, noisy[name], data_range), denoised_ssim=ssim(c, denoised[name], data_range),
        ))
    return rows


def score_table(scores: Sequence[BsdImageScore], save: str | Path | None = None):
    """Per-image scores plus a ``mean`` row as a pandas DataFrame indexed by image name.

    ``save`` writes the (unrounded) table as CSV.
    """
    report = BsdReport(scores=list(scores), sigma=float("nan"), seed=0, tta=False, epochs=0, n_train=0,
                       run_dir=None, train_seconds=0.0, predict_seconds=0.0)
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        report.to_frame(rounded=False).to_csv(save)
    return report.to_frame()


def reference_table(measured: Mapping[str, float] | None = None):
    """The reference PSNRs on BSD68 (sigma 25) as a DataFrame, with ``measured`` rows appended."""
    import pandas as pd

    rows = [{"method": k, "PSNR (dB)": v, "source": "reference (BSD68)"} for k, v in REFERENCE_PSNR.items()]
    rows += [{"method": k, "PSNR (dB)": round(float(v), 2), "source": "measured here"}
             for k, v in (measured or {}).items()]
    return pd.DataFrame(rows).set_index("method")


@dataclass
class BsdReport:
    """Result of one BSD protocol run: per-image scores, their means, timings, and the images.

    ``images[name]`` holds ``{"clean", "noisy", "denoised"}`` arrays (kept in memory, not saved);
    ``details`` (schedule, deadline, training settings, model path) goes into the summary as is.
    """

    scores: list[BsdImageScore]
    sigma: float
    seed: int
    tta: bool
    epochs: int
    n_train: int
    run_dir: Path | None
    train_seconds: float
    predict_seconds: float
    details: dict = field(default_factory=dict)
    images: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def _mean(self, attr: str) -> float:
        return float(np.mean([getattr(s, attr) for s in self.scores])) if self.scores else float("nan")

    @property
    def mean_noisy_psnr(self) -> float:
        """Mean PSNR (dB) of the noisy inputs."""
        return self._mean("noisy_psnr")

    @property
    def mean_denoised_psnr(self) -> float:
        """Mean PSNR (dB) of the denoised outputs."""
        return self._mean("denoised_psnr")

    @property
    def mean_noisy_ssim(self) -> float:
        """Mean SSIM of the noisy inputs."""
        return self._mean("noisy_ssim")

    @property
    def mean_denoised_ssim(self) -> float:
        """Mean SSIM of the denoised outputs."""
        return self._mean("denoised_ssim")

    def table(self) -> list[dict]:
        """One dict per image plus a final ``mean`` row (keys: image, noisy/denoised PSNR and SSIM, gain)."""
        rows = [{"image": s.name, "noisy_psnr": s.noisy_psnr, "denoised_psnr": s.denoised_psnr,
                 "psnr_gain": s.psnr_gain, "noisy_ssim": s.noisy_ssim, "denoised_ssim": s.denoised_ssim}
                for s in self.scores]
        rows.append({"image": "mean", "noisy_psnr": self.mean_noisy_psnr,
                     "denoised_psnr": self.mean_denoised_psnr,
                     "psnr_gain": self.mean_denoised_psnr - self.mean_noisy_psnr,
                     "noisy_ssim": self.mean_noisy_ssim, "denoised_ssim": self.mean_denoised_ssim})
        return rows

    def to_frame(self, rounded: bool = True):
        """The :meth:`table` as a pandas DataFrame indexed by image name (rounded to 3 decimals for display)."""
        import pandas as pd

        frame = pd.DataFrame(self.table()).set_index("image")
        return frame.round(3) if rounded else frame

    def summary(self) -> dict:
        """Means, settings and timings as a JSON-serialisable dict."""
        return {"sigma": self.sigma, "seed": self.seed, "tta": self.tta, "epochs": self.epochs,
                "n_train": self.n_train, "n_test": len(self.scores),
                "run_dir": str(self.run_dir) if self.run_dir else None,
                "mean_noisy_psnr": self.mean_noisy_psnr, "mean_denoised_psnr": self.mean_denoised_psnr,
                "mean_noisy_ssim": self.mean_noisy_ssim, "mean_denoised_ssim": self.mean_denoised_ssim,
                "train_seconds": self.train_seconds, "predict_seconds": self.predict_seconds, **self.details}

    def save(self, out_dir: str | Path) -> Path:
        """Write ``bsd_scores.csv`` (per image + mean) and ``bsd_summary.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rows = self.table()
        with open(out / "bsd_scores.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (out / "bsd_summary.json").write_text(json.dumps(self.summary(), indent=2))
        return out
