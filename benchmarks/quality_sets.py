"""The image sets of :mod:`quality` (benchmarks/quality.py), with their truth, and how they are scored.

- ``jump``, ``low-light``: synthetic plates of :func:`jumpdenoise.io.synthetic.generate_plate`
  with that noise level, truth in ``<plate>/ground_truth/<WELL>-<FIELD>.npy``;
- ``fmd``: the FMD test set (``<repo>/../shared/data/fluo/fmd_testset``: 12 microscope/sample
  types x 4 single-frame captures, each with its average-of-50 ground truth in ``gt/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FMD_ROOT = ROOT / ".." / "shared" / "data" / "fluo" / "fmd_testset"
SYNTHETIC_CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")


@dataclass
class ImageSet:
    """Noisy images ``(c, y, x)``, their truths and how planes are grouped for the table."""

    name: str
    keys: list[str]
    noisy: list[np.ndarray]
    truth: list[np.ndarray]
    channels: list[str]
    groups: list[list[str]]            # per image, per channel: the group a plane is reported under
    data_range: float | None = None    # None: metrics' default (the truth's robust range)
    notes: dict = field(default_factory=dict)
    units: dict[str, list[int]] | None = None  # images of one instrument (see :func:`instrument_units`)


def load_fmd(root: Path, types: list[str] | None) -> ImageSet:
    """The FMD test set: ``raw/<Type>_<k>.png`` and ``gt/<Type>_<k>.png`` (8-bit, 512 x 512)."""
    from PIL import Image

    def read_image(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))[None]

    root = root.resolve()
    if not (root / "raw").is_dir():
        raise SystemExit(f"FMD test set not found: {root} (expected raw/ and gt/)")
    files = sorted((root / "raw").glob("*.png"))
    all_types = sorted({p.stem.rsplit("_", 1)[0] for p in files})
    chosen = all_types if not types else types
    unknown = sorted(set(chosen) - set(all_types))
    if unknown:
        raise SystemExit(f"--fmd-types: unknown {unknown}; choose from {all_types}")
    keys, noisy, truth, groups = [], [], [], []
    for p in files:
        kind = p.stem.rsplit("_", 1)[0]
        if kind in chosen:
            keys.append(p.stem)
            noisy.append(read_image(p))
            truth.append(read_image(root / "gt" / p.name).astype(np.float32))
            groups.append([kind])
    units = {kind: [i for i, g in enumerate(groups) if g[0] == kind] for kind in chosen}
    return ImageSet("fmd", keys, noisy, truth, ["gray"], groups, data_range=255.0, notes={"types": chosen},
                    units=units)


def synthetic_set(level: str, work: Path, *, rows: int, columns: int, fields: int, size: int,
                  seed: int) -> ImageSet:
    """A synthetic plate with noise level ``level``, read back from its TIFFs, with its truth."""
    import tifffile

    from jumpdenoise.io.synthetic import generate_plate, phenix_file_name

    out = work / f"plate-{level}"
    try:
        images = generate_plate(out, rows=rows, columns=columns, fields=fields, channels=SYNTHETIC_CHANNELS,
                                size=(size, size), seed=seed, ground_truth=True, noise=level)
    except TypeError as exc:
        raise SystemExit(f"generate_plate does not take noise={level!r} yet ({exc})") from None
    keys, noisy, truth, groups = [], [], [], []
    for npy in sorted((out / "ground_truth").glob("*.npy")):
        well, index = npy.stem.split("-")
        row, col = "ABCDEFGHIJKLMNOPQRSTUVWXYZ".index(well[0]) + 1, int(well[1:])
        planes = [tifffile.imread(images / phenix_file_name(row, col, int(index) + 1, c + 1))
                  for c in range(len(SYNTHETIC_CHANNELS))]
        keys.append(npy.stem)
        noisy.append(np.stack(planes))
        truth.append(np.load(npy).astype(np.float32))
        groups.append(list(SYNTHETIC_CHANNELS))
    notes = {"plate": f"{rows} x {columns} wells x {fields} fields, {size}^2, seed {seed}",
             "truth_dir": str(out / "ground_truth")}
    meta = out / "ground_truth" / "truth.json"
    if meta.is_file():
        notes["truth_json"] = json.loads(meta.read_text())
    return ImageSet(level, keys, noisy, truth, list(SYNTHETIC_CHANNELS), groups, notes=notes)


def instrument_units(data: ImageSet) -> dict[str, tuple[list[int], list[int]]]:
    """Per instrument: (held-out images the blend is measured on, images it is applied to).

    A plate comes from one microscope, and predict measures its blend weights and noise per
    channel of that plate. The FMD set mixes 12 microscope/sample types with different noise
    (their fitted variances differ 20-fold), so each type is one unit: its first capture is the
    held-out image, and its four captures are written with its weights, as one plate per type
    would be. A synthetic plate is one unit: its first sixth of images is held out.
    """
    if data.units:
        return {name: (idx[:1], idx) for name, idx in data.units.items()}
    everything = list(range(len(data.noisy)))
    return {data.name: (everything[:max(1, len(everything) // 6)], everything)}


def training_groups(data: ImageSet) -> dict[str, list[int]]:
    """Images trained together: one microscope's (FMD: the type's prefix, ``Confocal``, ``TwoPhoton``,
    ``WideField``); a synthetic plate is one microscope."""
    if not data.units:
        return {data.name: list(range(len(data.noisy)))}
    groups: dict[str, list[int]] = {}
    for unit, members in data.units.items():
        groups.setdefault(unit.split("_", 1)[0], []).extend(members)
    return {g: sorted(m) for g, m in groups.items()}


def subset(data: ImageSet, members: list[int]) -> ImageSet:
    """The images ``members`` of ``data`` as a set of their own (instrument units kept)."""
    index = {i: k for k, i in enumerate(members)}
    units = None if data.units is None else {
        u: [index[i] for i in idx] for u, idx in data.units.items() if all(i in index for i in idx)}
    return ImageSet(data.name, [data.keys[i] for i in members], [data.noisy[i] for i in members],
                    [data.truth[i] for i in members], data.channels, [data.groups[i] for i in members],
                    data_range=data.data_range, notes=data.notes, units=units)


def split_val(data: ImageSet) -> list[np.ndarray]:
    """Validation images of both trainers: every unit's held-out images (also trained on)."""
    return [data.noisy[i] for held, _ in instrument_units(data).values() for i in held]


def true_gains(data: ImageSet, images: list[np.ndarray], members: list[int], *,
               offset_free: bool = False) -> dict[str, float]:
    """Per channel: ``10 log10(MSE raw / MSE images)`` against the truth, pooled over images ``members``.

    ``offset_free``: against each plane's truth shifted by the plane's global offset
    ``mean(raw - truth)``. FMD's four captures of a field share one average-of-50 truth and
    differ from it by such offsets (illumination), which a denoiser keeps and which its error
    against the truth then contains; without them the true gain is that of the noise removed,
    the quantity the estimate made without truth measures.
    """
    out = {}
    for c, ch in enumerate(data.channels):
        raw = den = 0.0
        for i in members:
            noisy, truth = data.noisy[i][c].astype(np.float64), data.truth[i][c].astype(np.float64)
            if offset_free:
                truth = truth + float(np.mean(noisy - truth))
            raw += float(np.mean((noisy - truth) ** 2))
            den += float(np.mean((images[i][c].astype(np.float64) - truth) ** 2))
        out[ch] = 10 * float(np.log10(raw / den))
    return out


def noise_neighbour_correlation(data: ImageSet, members: list[int]) -> dict[str, float]:
    """Per channel: correlation of the noise ``raw - truth`` between neighbouring pixels.

    The mean of the horizontal and the vertical lag-1 correlation coefficients, pooled over images
    ``members`` (each plane's global offset removed). About 0 for white noise. A blind-spot network
    sees part of a pixel's noise in its neighbours when this is not 0, which lowers the masked loss
    below the denoised error plus the noise variance: the gain estimated without truth then comes
    out too high.
    """
    out = {}
    for c, ch in enumerate(data.channels):
        products = np.zeros(2)
        energy = 0.0
        for i in members:
            n = data.noisy[i][c].astype(np.float64) - data.truth[i][c].astype(np.float64)
            n -= n.mean()
            products += [np.mean(n[:, 1:] * n[:, :-1]), np.mean(n[1:] * n[:-1])]
            energy += float(np.mean(n * n))
        out[ch] = float(products.mean() / energy)
    return out


def score_images(data: ImageSet, images: list[np.ndarray]) -> dict:
    """Per-group mean PSNR / SSIM / bias over the planes, and the mean over all planes."""
    from jumpdenoise.quality.metrics import score

    by_group: dict[str, list[dict]] = {}
    for img, truth, groups in zip(images, data.truth, data.groups):
        for c, group in enumerate(groups):
            by_group.setdefault(group, []).append(score(img[c], truth[c], data_range=data.data_range))
    planes = [s for scores in by_group.values() for s in scores]
    mean = lambda rows, key: float(np.mean([r[key] for r in rows]))
    return {"psnr": mean(planes, "psnr"), "ssim": mean(planes, "ssim"), "bias_pct": mean(planes, "bias_pct"),
            "groups": {g: {k: mean(rows, k) for k in ("psnr", "ssim", "bias_pct")} for g, rows in by_group.items()}}


def over_seeds(runs: list[dict]) -> dict:
    """Mean and standard deviation over seeds of every score (overall and per group)."""
    def stats(values: list[float]) -> dict:
        return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}

    keys = ("psnr", "ssim", "bias_pct")
    out = {k: stats([r[k] for r in runs]) for k in keys}
    out["groups"] = {g: {k: stats([r["groups"][g][k] for r in runs]) for k in keys} for g in runs[0]["groups"]}
    out["per_seed"] = runs
    return out
