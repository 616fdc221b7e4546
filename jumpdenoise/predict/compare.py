"""Raw vs denoised, per channel: mean, standard deviation and a noise estimate.

Noise estimate of an image: the robust standard deviation of its high-pass residual,
``1.4826 * MAD(h) / 6`` where ``h`` is the image filtered with Immerkaer's kernel
``[[1,-2,1],[-2,4,-2],[1,-2,1]]`` (which removes planar structure and has norm 6, so that
white noise of std ``s`` gives ``h`` of std ``6 s``). It is computed on a central crop of at
most 512 x 512 pixels of each field; the well and plate values are medians over fields.
Mean and std are exact over all pixels (sums in float64).

A field's partial (:func:`field_comparison`) is stored in its done marker under ``cmp.*``
keys; :func:`merge_comparison` turns the markers into the plate and per-well summary kept
in ``attrs["jumpdenoise"]["comparison"]`` and in ``.jumpdenoise/comparison.csv``.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

PREFIX = "cmp."
NOISE_CROP = 512
CSV_COLUMNS = ["scope", "well", "channel", "n_fields", "raw_mean", "denoised_mean", "raw_std", "denoised_std",
               "raw_noise", "denoised_noise", "noise_ratio"]

__all__ = ["noise_sigma", "field_comparison", "merge_comparison", "write_comparison_csv"]


def noise_sigma(image: np.ndarray, crop: int | None = NOISE_CROP) -> float:
    """Robust noise standard deviation of a 2-D image (see the module docstring)."""
    a = np.asarray(image, dtype=np.float32)
    if crop is not None:
        h, w = a.shape
        y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        a = a[y0:y0 + crop, x0:x0 + crop]
    if a.shape[0] < 3 or a.shape[1] < 3:
        return float("nan")
    hp = (a[:-2, :-2] + a[:-2, 2:] + a[2:, :-2] + a[2:, 2:]
          - 2 * (a[:-2, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] + a[2:, 1:-1]) + 4 * a[1:-1, 1:-1])
    med = np.median(hp)
    return float(1.4826 * np.median(np.abs(hp - med)) / 6.0)


def field_comparison(raw: np.ndarray, denoised: np.ndarray) -> dict[str, np.ndarray]:
    """Partial comparison of one field (``(c, y, x)`` raw and denoised, same channels).

    Returns arrays keyed ``cmp.<name>`` (one value per channel): ``count``, ``raw_sum``,
    ``raw_sumsq``, ``den_sum``, ``den_sumsq``, ``raw_noise``, ``den_noise``.
    """
    if raw.shape != denoised.shape:
        raise ValueError(f"raw {raw.shape} and denoised {denoised.shape} fields differ in shape")
    out: dict[str, list[float]] = {k: [] for k in ("count", "raw_sum", "raw_sumsq", "den_sum", "den_sumsq",
                                                    "raw_noise", "den_noise")}
    for r, d in zip(raw, denoised):
        r64, d64 = r.astype(np.float64), d.astype(np.float64)
        out["count"].append(float(r.size))
        out["raw_sum"].append(float(r64.sum()))
        out["raw_sumsq"].append(float(np.square(r64).sum()))
        out["den_sum"].append(float(d64.sum()))
        out["den_sumsq"].append(float(np.square(d64).sum()))
        out["raw_noise"].append(noise_sigma(r))
        out["den_noise"].append(noise_sigma(d))
    return {PREFIX + k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _summary(parts: Sequence[Mapping[str, np.ndarray]], i: int) -> dict:
    n = sum(float(p[PREFIX + "count"][i]) for p in parts)

    def mean_std(prefix: str) -> tuple[float, float]:
        s = sum(float(p[PREFIX + prefix + "_sum"][i]) for p in parts)
        ss = sum(float(p[PREFIX + prefix + "_sumsq"][i]) for p in parts)
        m = s / n
        return m, float(np.sqrt(max(ss / n - m * m, 0.0)))

    rm, rs = mean_std("raw")
    dm, ds = mean_std("den")
    rn = float(np.median([float(p[PREFIX + "raw_noise"][i]) for p in parts]))
    dn = float(np.median([float(p[PREFIX + "den_noise"][i]) for p in parts]))
    return {"n_fields": len(parts), "raw_mean": rm, "denoised_mean": dm, "raw_std": rs, "denoised_std": ds,
            "raw_noise": rn, "denoised_noise": dn, "noise_ratio": dn / rn if rn > 0 else None}


def merge_comparison(partials: Mapping[str, Mapping[str, np.ndarray]], channels: Sequence[str]) -> dict:
    """Plate and per-well comparison from field partials keyed ``"A01-0"`` (sorted, deterministic).

    Returns
    -------
    dict
        ``{"version": 1, "noise_estimator": ..., "plate": {channel: summary},
        "wells": {well: {channel: summary}}}``; a summary holds ``n_fields``, ``raw_mean``,
        ``denoised_mean``, ``raw_std``, ``denoised_std``, ``raw_noise``, ``denoised_noise``
        and ``noise_ratio`` (denoised / raw noise).
    """
    keys = sorted(k for k in partials if PREFIX + "count" in partials[k])
    if not keys:
        raise ValueError("no comparison partials to merge")
    by_well: dict[str, list] = {}
    for k in keys:
        by_well.setdefault(k.split("-", 1)[0], []).append(partials[k])
    all_parts = [partials[k] for k in keys]
    return {
        "version": 1,
        "noise_estimator": f"1.4826*MAD(Immerkaer high-pass)/6 on a central {NOISE_CROP}px crop; median over fields",
        "plate": {ch: _summary(all_parts, i) for i, ch in enumerate(channels)},
        "wells": {w: {ch: _summary(parts, i) for i, ch in enumerate(channels)} for w, parts in by_well.items()},
    }


def write_comparison_csv(comparison: dict, path: str | Path) -> None:
    """One row per (scope, well, channel) with the columns of :data:`CSV_COLUMNS`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        scopes = [("plate", "", comparison["plate"])] + [("well", w, s) for w, s in comparison["wells"].items()]
        for scope, well, per_channel in scopes:
            for ch, s in per_channel.items():
                writer.writerow([scope, well, ch, *(_fmt(s.get(c)) for c in CSV_COLUMNS[3:])])
    tmp.replace(path)


def _fmt(v: object) -> object:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)
