"""The gain of a trained Noise2Void model without ground truth, and the guard before predict.

For a blind-spot estimate ``f(y)_i`` (made without seeing pixel ``i``) and noise of zero mean
independent between pixels, ``E[(f(y)_i - y_i)^2] = E[(f(y)_i - x_i)^2] + sigma_i^2``, and the
raw image's own error is ``sigma_i^2``. So on held-out fields

- ``masked_mse``: the mean squared difference between the network's prediction at masked
  pixels (each replaced by a random neighbour, as in N2V training) and their noisy values;
- ``noise_variance``: the mean noise variance at the same pixels, ``a * y_i + b``, from the
  camera's noise model when one is known (``noise_source: "camera"``: the plate's
  ``ground_truth/truth.json`` ``noise_model``, see :mod:`jumpdenoise.quality.truth`), else from
  a Poisson-Gaussian fit of the held-out fields themselves (``noise_source: "fit"``,
  :mod:`jumpdenoise.quality.noise`; its limits are stated there);
- first of all, the network's output offset ``mean(f(y) - y)`` is measured on the same fields and
  removed (:mod:`jumpdenoise.quality.calibration`); everything below is of the corrected network;
- ``excess = masked_mse - noise_variance`` estimates the network's error, and
  ``network_gain_db = 10 log10(noise_variance / excess)`` the gain of its output alone;
- predict writes the network's output blended with the raw image (:mod:`jumpdenoise.quality.blend`);
  ``blend`` (the weights of its low and high band) and ``gain_db``, the gain of what predict writes, are measured on the same
  held-out fields without masking, with Stein's unbiased risk estimate (which also catches a
  network that passes its input pixel through: its weight falls towards 0, its gain to 0 dB).

Masked pixels lie on a regular grid of step ``roi_radius + 1`` (no masked pixel can be
another's replacement), shifted on each pass. The ``_low`` / ``_high`` bounds are +- 2
standard errors; when ``excess`` is not above 0 the network's error is beyond what the
sample can measure and ``network_gain_db`` is its lower bound (``lower_bound: true``). An estimate is
``reliable`` when the noise comes from the camera model, or from a fit whose scale ratio
(:class:`~jumpdenoise.quality.noise.NoiseVariance`) is at most 1.5; the guard acts on reliable
estimates only (the others are reported and warned about).
The estimate is stored in ``<run>/quality.json`` (:func:`estimate_run_gain`, called by the
train stage's ``finalize``) and read by :func:`read_gain`; :func:`jumpdenoise.quality.guard.check_gain_before_predict`
stops a pipeline before predict when a channel's gain (``gain_db``, of what predict writes) is
<= 0 dB.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jumpdenoise.errors import JumpDenoiseError
from jumpdenoise.quality.blend import SureTerms
from jumpdenoise.quality.calibration import measure_output_offset, shift_output
from jumpdenoise.quality.correlation import correlated_probe, sure_correlation, variance_scale
from jumpdenoise.quality.noise import (
    RELIABLE_SCALE_RATIO,
    NoiseVariance,
    fit_poisson_gaussian,
)

__all__ = [
    "QUALITY_JSON",
    "estimate_after_training",
    "estimate_gain",
    "estimate_if_stale",
    "estimate_run_gain",
    "read_gain",
    "read_quality",
    "run_folder_of",
]

log = logging.getLogger(__name__)

QUALITY_JSON = "quality.json"
TARGET_PIXELS = 100_000
MAX_PASSES = 8
MAX_FIELDS = 4
#: Step of the divergence estimate, as a fraction of the noise standard deviation.
EPS_NOISE = 0.1


def _masked_input(field: np.ndarray, offset: tuple[int, int], step: int, radius: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``field`` with the grid pixels ``offset + step * k`` replaced by random neighbours.

    Returns the masked field and the (rows, columns) of the masked pixels. A neighbour is
    ``(dy, dx)`` away, each uniform in ``[-r, -1] u [1, r]``, reflected inside the field.
    """
    _, h, w = field.shape
    ys, xs = np.meshgrid(np.arange(offset[0], h, step), np.arange(offset[1], w, step), indexing="ij")
    ys, xs = ys.ravel(), xs.ravel()
    span = np.concatenate([np.arange(-radius, 0), np.arange(1, radius + 1)])

    def neighbour(pos: np.ndarray, size: int) -> np.ndarray:
        moved = pos + rng.choice(span, pos.size)
        return np.where((moved < 0) | (moved >= size), 2 * pos - moved, moved).clip(0, size - 1)

    masked = field.copy()
    for c in range(field.shape[0]):
        masked[c, ys, xs] = field[c, neighbour(ys, h), neighbour(xs, w)]
    return masked, ys, xs


def _roi_radius(careamics_config: dict) -> int:
    n2v = (careamics_config.get("algorithm_config") or {}).get("n2v_config") or {}
    return int(n2v.get("roi_size", 11)) // 2


def estimate_gain(model: Any, fields: Sequence[np.ndarray], channels: Sequence[str], *,
                  noise_models: Mapping[str, NoiseVariance] | None = None, target_pixels: int = TARGET_PIXELS,
                  max_passes: int = MAX_PASSES, seed: int = 0, blend: bool = True) -> dict:
    """Estimate each channel's gain in dB from blind-spot predictions on held-out fields.

    Parameters
    ----------
    model
        A :class:`~jumpdenoise.predict.model.LoadedModel` (or anything
        :func:`~jumpdenoise.predict.model.load_model` takes), run on the CPU.
    fields
        Raw ``(c, y, x)`` fields in the model's channel order (not used for training); a
        model trained on phase sub-images (``phase_split``) is measured on theirs, as predict
        runs it, so its blend weights apply to each sub-image.
    channels
        Channel names, in that order.
    noise_models
        Known camera noise per channel (``var = a * y + b``); other channels are fitted.
    target_pixels
        Masked pixels wanted per channel (passes are added until reached or ``max_passes``).
    seed
        Seed of the grid shifts and of the replacement neighbours.
    blend
        Choose the blend weights (default); ``False`` records weights of 1, what predict then
        writes being the network's output alone (a protocol that scores, or exports, the
        network itself: BSD), with its gain.

    Returns
    -------
    dict
        ``{channel: {gain_db, gain_db_low, gain_db_high, blend, unmasked_mse,
        pass_through_variance, n_pixels_sure, network_gain_db, network_gain_db_low,
        network_gain_db_high, lower_bound, masked_mse, noise_variance, excess_mse, n_pixels,
        noise_model, noise_source, reliable}}`` plus
        ``"_meta"`` (grid step, passes).
    """
    from jumpdenoise.compute.phases import split_phases
    from jumpdenoise.predict.engine import Predictor
    from jumpdenoise.predict.model import load_model

    base = load_model(model, "cpu")
    # the network alone, on the fields as it runs on them: whole, or each of their phase sub-images
    loaded = dataclasses.replace(base, module=copy.deepcopy(base.module), blend=None, phase_split=1)
    whole = [np.asarray(f) for f in fields]
    arrays = [np.ascontiguousarray(sub, dtype=np.float32) for f in whole for sub in split_phases(f, base.phase_split)]
    if not arrays:
        raise ValueError("no field to estimate the gain on")
    # whole fields: no receptive field to measure; the output offset first, everything else on the corrected network
    shift_output(loaded, measure_output_offset(Predictor(loaded, tile_size=None, overlap=0), arrays))
    predictor = Predictor(loaded, tile_size=None, overlap=0)
    radius = _roi_radius(loaded.careamics_config)
    step = radius + 1
    per_pass = sum(math.ceil(a.shape[1] / step) * math.ceil(a.shape[2] / step) for a in arrays)
    passes = int(min(max_passes, step * step, max(1, math.ceil(target_pixels / per_pass))))
    rng = np.random.default_rng(seed)
    shifts = rng.permutation(step * step)[:passes]
    n_ch = len(channels)
    residuals: list[list[np.ndarray]] = [[] for _ in range(n_ch)]
    values: list[list[np.ndarray]] = [[] for _ in range(n_ch)]
    for field in arrays:
        for shift in shifts:
            masked, ys, xs = _masked_input(field, (int(shift) // step, int(shift) % step), step, radius, rng)
            pred = predictor.denoise(masked)
            for c in range(n_ch):
                noisy = field[c, ys, xs].astype(np.float64)
                residuals[c].append(pred[c, ys, xs].astype(np.float64) - noisy)
                values[c].append(noisy)
    models = {ch: (noise_models or {}).get(ch) or _fitted_noise(arrays, whole, c, base.phase_split)
              for c, ch in enumerate(channels)}
    correlations = [sure_correlation([f[c] for f in whole], base.phase_split, models[ch].correlation)
                    for c, ch in enumerate(channels)]
    sure = _sure_terms(predictor, arrays, [models[ch] for ch in channels], correlations, rng)
    out: dict[str, Any] = {"_meta": {"grid_step": step, "roi_radius": radius, "passes": passes,
                                     "n_fields": len(whole), "phase_split": base.phase_split}}
    for c, ch in enumerate(channels):
        known = (noise_models or {}).get(ch)
        ratio = models[ch].scale_ratio
        reliable = known is not None or (ratio is not None and ratio <= RELIABLE_SCALE_RATIO)
        r2 = np.concatenate(residuals[c]) ** 2
        var = models[ch].variance(np.concatenate(values[c]))
        offset = None if loaded.output_offset is None else float(loaded.output_offset[c])
        out[ch] = {**_written_entry(sure[c], None if blend else (1.0, 1.0)), **_network_entry(r2, var),
                   "output_offset": offset,
                   "noise_model": models[ch].as_dict(),
                   "noise_source": "camera" if known else "fit", "reliable": reliable,
                   "noise_neighbour_correlation": correlations[c]}
    return out


def _fitted_noise(arrays: Sequence[np.ndarray], fields: Sequence[Any], c: int, phase_split: int) -> NoiseVariance:
    """Channel ``c``'s noise fitted on ``arrays``; on phase sub-images, scaled up to the variance of
    pixels two apart in the whole ``fields`` (:func:`jumpdenoise.quality.correlation.variance_scale`):
    the sub-images' noise keeps part of its correlation, which makes a fit on them low."""
    model = fit_poisson_gaussian([a[c] for a in arrays])
    if phase_split == 1:
        return model
    scale = variance_scale([np.asarray(f)[c] for f in fields], model)
    if scale is None or scale <= 1.0:
        return model
    return dataclasses.replace(model, a=model.a * scale, b=model.b * scale)


def _sure_terms(predictor: Any, arrays: Sequence[np.ndarray], models: Sequence[NoiseVariance],
                correlations: Sequence[float], rng: np.random.Generator) -> list[SureTerms]:
    """SURE terms of each channel over whole held-out fields, as predict sees them (unmasked).

    ``correlations``: each channel's noise neighbour correlation in these fields; the extra
    pass's probe is filtered to it (:mod:`jumpdenoise.quality.blend`).
    """
    terms = [SureTerms() for _ in models]
    for field in arrays:
        variances = [m.variance(field[c]) for c, m in enumerate(models)]
        eps = np.asarray([EPS_NOISE * math.sqrt(float(v.mean())) for v in variances], np.float32).reshape(-1, 1, 1)
        probe = correlated_probe(rng, field.shape, correlations)
        pred = predictor.denoise(field)
        moved = predictor.denoise(field + eps * probe)
        for c, term in enumerate(terms):
            term.add(pred[c].astype(np.float64) - field[c], variances[c], moved[c].astype(np.float64) - pred[c],
                     probe[c], float(eps[c, 0, 0]), correlations[c])
    return terms


def _db(noise: float, excess: float) -> float:
    return 10.0 * math.log10(noise / excess)


def _written_entry(sure: SureTerms, weights: tuple[float, float] | None = None) -> dict:
    """Blend weights (``weights``, or the best) and the gain of what predict writes, with its +-2
    standard-error range."""
    low, high = sure.weights() if weights is None else weights
    noise = sure.mean_noise()
    risk, se = sure.risk(low, high)
    risk = min(max(risk, 1e-12 * noise), noise)  # weights (0, 0) are the raw image: risk = noise exactly
    blended = low > 0 or high > 0
    m = sure.sum / sure.n
    return {"gain_db": _db(noise, risk), "gain_db_low": _db(noise, min(noise, risk + 2 * se)) if blended else 0.0,
            "gain_db_high": _db(noise, risk - 2 * se) if risk > 2 * se and blended else None,
            "blend": [low, high], "unmasked_mse": float(m[0] + 2 * m[1] + m[2]),
            "pass_through_variance": float(noise - m[3] - m[4]), "n_pixels_sure": sure.n}


def _network_entry(r2: np.ndarray, var: np.ndarray) -> dict:
    """The network's own gain (blind-spot: masked pixels) and its +-2 standard-error range."""
    diff = r2 - var
    n = diff.size
    excess, noise = float(diff.mean()), float(var.mean())
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf")
    high_excess, low_excess = excess + 2 * se, excess - 2 * se
    lower_bound = excess <= 0
    return {"network_gain_db": _db(noise, high_excess) if lower_bound else _db(noise, excess),
            "network_gain_db_low": _db(noise, high_excess),
            "network_gain_db_high": _db(noise, low_excess) if low_excess > 0 else None, "lower_bound": lower_bound,
            "masked_mse": float(r2.mean()), "noise_variance": noise, "excess_mse": excess, "n_pixels": int(n)}


def estimate_run_gain(run_dir: str | Path, fields: Sequence[Any], channels: Sequence[str], *,
                      noise_models: Mapping[str, NoiseVariance] | None = None, max_fields: int = MAX_FIELDS,
                      seed: int = 0, checkpoint: str | None = None, blend: bool = True) -> dict:
    """Estimate the gain of a run folder's model on held-out fields and write ``<run>/quality.json``.

    Parameters
    ----------
    run_dir
        The training run folder.
    fields
        Held-out fields: ``(c, y, x)`` arrays or objects with ``load()`` and ``key``
        (:class:`~jumpdenoise.train.fields.FieldRef`); the first ``max_fields`` are used.
    channels
        The model's channel names.
    noise_models
        Known camera noise per channel (:func:`jumpdenoise.quality.truth.camera_noise_models`).
    checkpoint
        The checkpoint measured (:func:`~jumpdenoise.predict.model.load_model`'s; default: the
        best); predict blends with these weights only when it loads the same checkpoint.
    blend
        See :func:`estimate_gain`.
    """
    from jumpdenoise.predict.model import load_model

    run = Path(run_dir)
    chosen = list(fields)[:max_fields]
    arrays = [f.load() if hasattr(f, "load") else np.asarray(f) for f in chosen]
    keys = [str(getattr(f, "key", i)) for i, f in enumerate(chosen)]
    loaded = load_model(run, "cpu", checkpoint=checkpoint)
    result = estimate_gain(loaded, arrays, channels, noise_models=noise_models, seed=seed, blend=blend)
    meta = result.pop("_meta")
    checkpoint = Path(loaded.checkpoint).resolve().relative_to(run.resolve()).as_posix()
    record = {"version": 2, "method": "N2V blind-spot masked MSE minus Poisson-Gaussian noise variance; the "
                                      "prediction is blended with the raw image (jumpdenoise.quality.gain, .blend)",
              "checkpoint": checkpoint, "fields": keys, **meta, "channels": result}
    tmp = run / f".{QUALITY_JSON}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(run / QUALITY_JSON)
    return record


def run_folder_of(model: str | Path) -> Path | None:
    """The run folder holding ``model`` (a run folder, or a checkpoint inside one), else ``None``."""
    p = Path(model)
    for folder in (p, p.parent, p.parent.parent) if not p.is_dir() else (p,):
        if (folder / QUALITY_JSON).is_file() or (folder / "normalization.json").is_file():
            return folder
    return None


def read_quality(run_dir: str | Path) -> dict | None:
    """``<run>/quality.json``, or ``None`` when the run has none."""
    path = Path(run_dir) / QUALITY_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise JumpDenoiseError(f"{path}: not readable JSON ({exc})") from None


def read_gain(run_dir: str | Path) -> dict[str, float]:
    """The estimated gain in dB per channel of a run folder (``{}`` when it has no ``quality.json``)."""
    record = read_quality(run_dir)
    if record is None:
        return {}
    return {ch: float(v["gain_db"]) for ch, v in record.get("channels", {}).items() if v.get("gain_db") is not None}


def estimate_after_training(config: Any, setup: Any) -> dict | None:
    """The train stage's estimate: the run's gain on its validation fields, into ``quality.json``.

    The camera noise comes from the plate's ground-truth ``truth.json`` when there is one
    (:func:`jumpdenoise.quality.truth.camera_noise_models`), else from the fields; see
    :func:`estimate_if_stale`.
    """
    from jumpdenoise.quality.truth import camera_noise_models, find_truth_dir

    run = Path(config.paths.run_dir)
    try:
        plate = Path(setup.resolved_config["plate"]["path"])
        truth_dir = find_truth_dir(plate, getattr(config.predict, "truth", None))
        models = camera_noise_models(truth_dir) if truth_dir is not None else {}
    except (JumpDenoiseError, ValueError, OSError) as exc:
        log.warning("%s: gain estimate failed (%s); predict will not be guarded", run, exc)
        return None
    return estimate_if_stale(run, setup.val_refs, setup.channels, noise_models=models, seed=int(setup.tc.seed))


def estimate_if_stale(run_dir: str | Path, fields: Sequence[Any], channels: Sequence[str], *,
                      noise_models: Mapping[str, NoiseVariance] | None = None, seed: int = 0,
                      blend: bool = True) -> dict | None:
    """:func:`estimate_run_gain` of a just-trained run, unless its ``quality.json`` is current.

    Skipped (returns ``None``) when the run has no ``best.json`` (no checkpoint), or its
    ``quality.json`` was measured on the checkpoint ``best.json`` names, after that checkpoint
    was written (a finished run trained again returns at once, rewriting ``best.json`` only).
    A failure is logged, not raised: the trained model stays usable (uncalibrated, unguarded).
    """
    from jumpdenoise.train.run_folder import run_checkpoint

    run = Path(run_dir)
    quality = run / QUALITY_JSON
    if not (run / "best.json").is_file():
        return None
    try:
        chosen = run_checkpoint(run)
        measured = (read_quality(run) or {}).get("checkpoint")
        if (measured is not None and (run / measured).resolve() == chosen.resolve()
                and quality.stat().st_mtime_ns >= chosen.stat().st_mtime_ns):
            return None
    except (JumpDenoiseError, OSError):
        pass  # measured again below
    try:
        return estimate_run_gain(run, fields, channels, noise_models=noise_models, seed=seed, blend=blend)
    except (JumpDenoiseError, ValueError, OSError) as exc:
        log.warning("%s: gain estimate failed (%s); predict will not be guarded", run, exc)
        return None
