"""Synthetic Cell Painting plates in the real Phenix export layout, for demos, tests and benchmarks.

:func:`generate_plate` writes ``<out>/Images/Index.idx.xml`` (Harmony V5 namespace, the
same elements as a real export) and one 16-bit, LZW-compressed, single-strip TIFF per
(well, field, channel) named ``rRRcCCfFFp01-chNsk1fk1fl1.tiff``, so that the Phenix reader
and the converter see exactly what they see on a real plate (the XML and the file names:
:mod:`jumpdenoise.io.phenix_writer`). Channel names in the XML are the names given (``DNA``,
``ER``, ...), so discovery needs no channel map.

Images: cells laid out as a Voronoi tessellation around random centres; nuclei (DNA) with
chromatin texture; perinuclear reticulum (ER); nucleoli and cytoplasm (RNA); membranes and
fibres (AGP/actin); punctate mitochondria (Mito); a bright flat field for brightfield-like
names. Each channel has its own background and brightness.

Noise is Poisson-Gaussian, ``offset + gain * Poisson((clean - offset) / gain) + Normal(0,
read_noise)``, shared between neighbouring pixels as on the real fields (neighbour
correlation about 0.5, :func:`jumpdenoise.io.noise_model.add_poisson_gaussian_noise`), with
gain, offset, read noise and correlation per stain fitted to real Phenix fields
(:data:`JUMP_NOISE`; method and values in ``docs/NOISE_MODEL.md``). Named levels
(:data:`NOISE_LEVELS`): ``jump`` has the signal levels and noise of the real fields;
``low-light`` has 10x fewer photons (expected signal above the offset divided by 10, same
camera). With ``ground_truth=True`` the clean images (expected values in ADU, float32,
(c, y, x)) are saved as ``<out>/ground_truth/<WELL>-<FIELDINDEX>.npy``, with
``<out>/ground_truth/truth.json`` = ``{"channels", "noise_level", "noise_model"}``.

Speed: a few clean "base" canvases (1.25x the field size) are synthesised; each field is a
random crop + flip of one of them with its own brightness, vignetting and fresh noise. One
task per base canvas (the canvas, then all its fields) goes to a process pool (``workers``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jumpdenoise.io.noise_model import NoiseModel, add_poisson_gaussian_noise
from jumpdenoise.io.phenix_writer import phenix_file_name, write_index_xml

__all__ = ["generate_plate", "JUMP_NOISE", "NOISE_LEVELS", "noise_models"]

#: Poisson-Gaussian noise per stain, fitted to the real Phenix fields (mean of the
#: phenix_v1 and cpg0000 fits, see docs/NOISE_MODEL.md), with the neighbour correlation
#: the fields' noise has. Brightfield: not fitted (its flat, narrow intensity range gives
#: no slope); a fluorescence-like gain and the read noise that gives the fitted variance at
#: the real brightfield level.
JUMP_NOISE: dict[str, NoiseModel] = {
    "nuclei": NoiseModel(gain=0.609, offset=259.0, read_noise=14.70, correlation=0.490),
    "er": NoiseModel(gain=0.728, offset=288.0, read_noise=15.29, correlation=0.495),
    "rna": NoiseModel(gain=0.684, offset=273.0, read_noise=14.47, correlation=0.496),
    "agp": NoiseModel(gain=1.267, offset=497.0, read_noise=16.99, correlation=0.512),
    "mito": NoiseModel(gain=0.802, offset=446.0, read_noise=19.02, correlation=0.510),
    "brightfield": NoiseModel(gain=0.70, offset=300.0, read_noise=81.0, correlation=0.50),
}
#: Standard deviation (pixels) of the Gaussian point spread function applied to the clean images.
PSF_SIGMA_PX = 1.0
#: Named noise levels -> factor on the expected signal above the offset (photons).
NOISE_LEVELS = {"jump": 1.0, "low-light": 0.1}
# style -> (background above offset, peak signal above offset) in ADU at the "jump" level
_STYLES = {
    "nuclei": (30.0, 7000.0), "er": (60.0, 13000.0), "rna": (40.0, 16000.0),
    "agp": (60.0, 10500.0), "mito": (40.0, 3800.0), "brightfield": (20700.0, -2500.0),
}
_CYCLE = ("nuclei", "er", "rna", "agp", "mito")


@dataclass(frozen=True)
class _PlateSpec:
    """What every field task needs (picklable; sent to the worker processes)."""

    size: tuple[int, int]
    channels: tuple[str, ...]
    seed: int
    images: str
    truth: str
    ground_truth: bool
    n_base: int
    photon_factor: float


def noise_models(channels: tuple[str, ...] | list[str]) -> dict[str, NoiseModel]:
    """The noise model of each channel name (by its stain; see :data:`JUMP_NOISE`)."""
    return {name: JUMP_NOISE[_style(name, c)] for c, name in enumerate(channels)}


def _style(name: str, index: int) -> str:
    key = name.upper().replace(" ", "")
    for style, words in (("nuclei", ("DNA", "HOECHST", "DAPI", "NUC")), ("mito", ("MITO",)),
                         ("rna", ("RNA", "SYTO")), ("agp", ("AGP", "ACTIN", "PHALLOIDIN", "WGA")),
                         ("brightfield", ("BRIGHT", "BF", "DPC", "PHASE")), ("er", ("ER", "CONCANAVALIN"))):
        if any(key.startswith(w) or key == w for w in words):
            return style
    return _CYCLE[index % len(_CYCLE)]


def _texture(rng, shape, sigma: float) -> np.ndarray:
    from scipy import ndimage as ndi

    t = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return t / max(float(t.std()), 1e-6)


def _norm(a: np.ndarray) -> np.ndarray:
    top = float(np.quantile(a[::7, ::7], 0.999))
    return a / top if top > 0 else a


def _clean_canvas(shape: tuple[int, int], channels: tuple[str, ...], seed, photon_factor: float = 1.0) -> np.ndarray:
    """Expected images (ADU, float32, (c, y, x)) of a field of random cells.

    ``photon_factor`` scales the expected signal above each channel's offset.
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    h, w = shape
    n = max(3, int(h * w / (np.pi * 26.0**2)))
    cy, cx = rng.uniform(0, h, n), rng.uniform(0, w, n)
    seeds = np.zeros(shape, np.int32)
    seeds[cy.astype(int), cx.astype(int)] = np.arange(1, n + 1)
    dist, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    lab = seeds[iy, ix] - 1
    yy, xx = np.indices(shape, dtype=np.float32)
    dy, dx = yy - cy[lab], xx - cx[lab]
    angle = rng.uniform(0, np.pi, n)[lab]
    a, b = rng.uniform(9, 14, n), rng.uniform(7, 11, n)
    u = dy * np.cos(angle) + dx * np.sin(angle)
    v = -dy * np.sin(angle) + dx * np.cos(angle)
    q = np.sqrt((u / a[lab]) ** 2 + (v / b[lab]) ** 2) * (1 + 0.08 * _texture(rng, shape, 6))
    nuc = 1 / (1 + np.exp(-(1 - q) * 8))
    ratio = dist / rng.uniform(22, 34, n)[lab] * (1 + 0.2 * _texture(rng, shape, 12))
    body = 1 / (1 + np.exp(-(1 - ratio) * 8))
    cyto = np.clip(body - nuc, 0, 1)
    edges = (lab != np.roll(lab, 1, 0)) | (lab != np.roll(lab, 1, 1))
    membrane = ndi.gaussian_filter((edges * body + np.abs(np.gradient(body)[0]) * 10).astype(np.float32), 1.5)
    peri = np.exp(-np.clip(dist - a[lab], 0, None) / 14)
    bright = rng.uniform(0.6, 1.0, n)[lab]
    out = np.empty((len(channels), h, w), np.float32)
    for c, name in enumerate(channels):
        style = _style(name, c)
        if style == "nuclei":
            sig = nuc * bright * (1 + 0.25 * _texture(rng, shape, 2))
        elif style == "er":
            sig = (cyto + 0.2 * nuc) * peri * (1 + 0.5 * _texture(rng, shape, 1.5))
        elif style == "rna":
            dots = np.zeros(shape, np.float32)
            k = 3 * n
            pick = rng.integers(0, n, k)
            py = np.clip(cy[pick] + rng.normal(0, 4, k), 0, h - 1).astype(int)
            px = np.clip(cx[pick] + rng.normal(0, 4, k), 0, w - 1).astype(int)
            dots[py, px] = 1
            sig = 3 * _norm(ndi.gaussian_filter(dots, 2.5)) * nuc + 0.35 * cyto * (1 + 0.3 * _texture(rng, shape, 3))
        elif style == "agp":
            sig = _norm(membrane) + 0.3 * cyto * (1 + 0.8 * np.abs(_texture(rng, shape, 1)))
        elif style == "mito":
            prob = (cyto * peri).ravel()
            k = 60 * n
            idx = rng.choice(prob.size, size=k, p=prob / prob.sum())
            dots = np.bincount(idx, minlength=prob.size).reshape(shape).astype(np.float32)
            sig = _norm(ndi.gaussian_filter(dots, 1.3)) + 0.1 * cyto
        else:  # brightfield-like
            sig = 0.6 * cyto + 0.4 * nuc + 0.1 * _texture(rng, shape, 4)
        background, peak = _STYLES[style]
        above = background + peak * np.clip(_norm(np.clip(sig, 0, None)), 0, 1.5)
        # the microscope's point spread function: no detail finer than about a pixel
        above = ndi.gaussian_filter(above, PSF_SIGMA_PX)
        out[c] = JUMP_NOISE[style].offset + photon_factor * above
    return out


def _write_base(spec: _PlateSpec, base: int, tasks: list[tuple[int, int, int, int, int, tuple[int, ...]]]) -> int:
    """Synthesise base canvas ``base`` and write each of its fields; returns bytes written."""
    cy, cx = spec.size[0] + spec.size[0] // 4, spec.size[1] + spec.size[1] // 4
    canvas = _clean_canvas((cy, cx), spec.channels, [spec.seed, 7919, base], spec.photon_factor)
    models = list(noise_models(spec.channels).values())
    return sum(_write_field(spec, canvas, models, task) for task in tasks)


def _write_base_task(job: tuple[_PlateSpec, int, list]) -> int:
    return _write_base(*job)


def _write_field(spec: _PlateSpec, canvas: np.ndarray, models: list[NoiseModel],
                 task: tuple[int, int, int, int, int, tuple[int, ...]]) -> int:
    """Cut one field out of ``canvas``, add noise, write its TIFFs (and ground truth); returns bytes."""
    import tifffile

    i, row, col, field, index, skip = task
    y, x = spec.size
    rng = np.random.default_rng([spec.seed, 104729, i])
    oy = int(rng.integers(0, canvas.shape[1] - y + 1))
    ox = int(rng.integers(0, canvas.shape[2] - x + 1))
    crop = canvas[:, oy:oy + y, ox:ox + x]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[:, :, ::-1]
    ry = (np.arange(y, dtype=np.float32) - y / 2) / y
    rx = (np.arange(x, dtype=np.float32) - x / 2) / x
    shading = (1 - 0.3 * (ry[:, None] ** 2 + rx[None, :] ** 2)) * np.float32(rng.uniform(0.85, 1.15))
    offsets = np.array([m.offset for m in models], np.float32)[:, None, None]
    clean = (crop - offsets) * shading + offsets
    images, written = Path(spec.images), 0
    for c in range(clean.shape[0]):
        if c in skip:
            continue
        noisy = add_poisson_gaussian_noise(clean[c], models[c], rng)
        plane = np.clip(np.rint(noisy), 0, 65535).astype(np.uint16)
        path = images / phenix_file_name(row, col, field, c + 1)
        tifffile.imwrite(path, plane, compression="lzw", rowsperstrip=y, photometric="minisblack",
                         metadata=None, software="jumpdenoise synthetic plate")
        written += path.stat().st_size
    if spec.ground_truth:
        from jumpdenoise.io.layout import row_letter, well_id

        np.save(Path(spec.truth) / f"{well_id(row_letter(row), col)}-{index}.npy", np.ascontiguousarray(clean, np.float32))
    return written


def generate_plate(
    out_dir: str | Path,
    *,
    plate_name: str = "DEMO-PLATE",
    rows: int = 2,
    columns: int = 3,
    fields: int = 2,
    channels: tuple[str, ...] | list[str] = ("DNA", "ER", "RNA", "AGP", "Mito"),
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    missing: int = 0,
    ground_truth: bool = True,
    noise: str = "jump",
    workers: int | None = None,
    n_base: int | None = None,
) -> Path:
    """Write a synthetic plate in the Phenix export layout and return its ``Images`` folder.

    Parameters
    ----------
    out_dir
        Output folder; ``Images/`` (XML + TIFFs) and ``ground_truth/`` are created in it.
    plate_name
        Plate name written in the XML.
    rows, columns
        Wells used: rows A.. and columns 1.. (the plate type is the smallest standard
        plate holding them).
    fields
        Fields per well.
    channels
        Channel names, written in the XML as ``ChannelName`` (ChannelID 1..n).
    size
        (y, x) image size.
    seed
        Seed of every random choice: the same arguments give the same files.
    missing
        Number of (field, channel) images listed in the XML whose TIFF is not written.
    ground_truth
        Also save the clean images as ``ground_truth/<WELL>-<FIELDINDEX>.npy`` (float32,
        (c, y, x), expected values in ADU) and ``ground_truth/truth.json`` (channel order,
        noise level, noise model per channel).
    noise
        Noise level, one of :data:`NOISE_LEVELS`: ``"jump"`` (signal and noise of real
        Phenix fields) or ``"low-light"`` (10x fewer photons, same camera).
    workers
        Processes writing fields (default: 1 for small plates, else up to 2).
    n_base
        Clean canvases synthesised per process (default: up to 8 small / 4 large).

    Returns
    -------
    pathlib.Path
        ``out_dir / "Images"``, the folder to pass to discovery / ``jumpdenoise convert``.
    """
    channels = tuple(channels)
    size = (int(size[0]), int(size[1]))
    if noise not in NOISE_LEVELS:
        raise ValueError(f"noise must be one of {', '.join(repr(k) for k in NOISE_LEVELS)}, got {noise!r}")
    if rows < 1 or columns < 1 or fields < 1 or not channels or min(size) < 16:
        raise ValueError("rows, columns, fields >= 1, at least one channel and size >= 16 are required")
    wells = [(r, c) for r in range(1, rows + 1) for c in range(1, columns + 1)]
    n_fields = len(wells) * fields
    total = n_fields * len(channels)
    if not 0 <= missing <= total:
        raise ValueError(f"missing must be between 0 and {total}, got {missing}")
    out = Path(out_dir)
    images, truth = out / "Images", out / "ground_truth"
    images.mkdir(parents=True, exist_ok=True)
    if ground_truth:
        truth.mkdir(exist_ok=True)
    write_index_xml(images / "Index.idx.xml", plate_name=plate_name, wells=wells, fields=fields,
                    channels=channels, size=size)
    rng = np.random.default_rng([seed, 31])
    gone = rng.choice(total, size=missing, replace=False) if missing else np.array([], int)
    skip: dict[int, set[int]] = {}
    for k in gone.tolist():
        skip.setdefault(k // len(channels), set()).add(k % len(channels))
    tasks = [(i, r, c, f + 1, f, tuple(sorted(skip.get(i, ()))))
             for i, ((r, c), f) in enumerate((w, f) for w in wells for f in range(fields))]
    small = size[0] * size[1] <= 512 * 512
    spec = _PlateSpec(size=size, channels=channels, seed=seed, images=str(images), truth=str(truth),
                      ground_truth=ground_truth, n_base=n_base or min(n_fields, 8 if small else 4),
                      photon_factor=NOISE_LEVELS[noise])
    if ground_truth:
        models = noise_models(channels)
        (truth / "truth.json").write_text(json.dumps({
            "channels": list(channels), "noise_level": noise,
            "noise_model": {name: model.as_dict() for name, model in models.items()}}, indent=1) + "\n")
    # one job per base canvas: the canvas is synthesised once, then all its fields are written
    jobs = [(spec, base, [t for t in tasks if t[0] % spec.n_base == base]) for base in range(spec.n_base)]
    jobs = [job for job in jobs if job[2]]
    if workers is None:
        workers = 1 if total * size[0] * size[1] < 40_000_000 else min(2, os.cpu_count() or 1)
    if workers <= 1:
        for job in jobs:
            _write_base_task(job)
    else:
        # fork: workers need no re-import of __main__ (works from notebooks and stdin scripts)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            for _ in pool.imap_unordered(_write_base_task, jobs):
                pass
    return images
