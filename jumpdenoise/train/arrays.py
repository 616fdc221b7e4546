"""Train N2V on in-memory images (used by the BSD notebook/CLI and the single-image demo).

Same data pipeline, module and run folder as plate training; normalisation is the
per-channel mean/std of the training images, computed once (or given). As after plate
training, the model's gain is then estimated on the validation images without truth and
written to ``quality.json`` with the output offset and blend weights that loading the model
applies (:mod:`jumpdenoise.quality.gain`, :mod:`jumpdenoise.quality.calibration`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from jumpdenoise.errors import ConfigError


def as_cyx_list(images: Sequence[np.ndarray] | np.ndarray, what: str = "images") -> list[np.ndarray]:
    """Return images as a list of ``(c, y, x)`` arrays.

    A single array is one ``YX`` image (2-D), one ``CYX`` image (3-D) or a stack of ``CYX``
    images (4-D); a list holds ``YX`` or ``CYX`` arrays.

    Raises
    ------
    ConfigError
        On other shapes or images with different channel counts.
    """
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            items = list(images)
        elif images.ndim in (2, 3):
            items = [images]
        else:
            raise ConfigError(f"{what}: expected a YX, CYX or SCYX array, got shape {images.shape}")
    else:
        items = list(images)
    if not items:
        raise ConfigError(f"{what}: no images given")
    out = []
    for i, img in enumerate(items):
        a = np.asarray(img)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise ConfigError(f"{what}[{i}]: expected a YX or CYX array, got shape {a.shape}")
        out.append(a)
    counts = {a.shape[0] for a in out}
    if len(counts) > 1:
        raise ConfigError(f"{what}: images have different channel counts {sorted(counts)}")
    return out


def train_on_arrays(images: list[np.ndarray] | np.ndarray, run_dir: str | Path, *,
                    channels: list[str] | None = None, val_images: list[np.ndarray] | np.ndarray | None = None,
                    epochs: int = 10, patch_size: int = 64, batch_size: int = 32, n2v2: bool = False,
                    seed: int = 1, trainer: dict | None = None, callbacks: list | None = None,
                    noise_models: Mapping[str, Any] | None = None, estimate: bool = True, blend: bool = True,
                    **overrides: Any) -> Path:
    """Train N2V on images in memory; write a complete run folder and return it.

    Parameters
    ----------
    images
        Training images, ``YX`` or ``CYX`` (any dtype); see :func:`as_cyx_list`.
    run_dir
        Run folder; rerunning with the same folder resumes from its last checkpoint.
    channels
        Channel names (default ``c0, c1, ...``).
    val_images
        Validation images; default: images held out (or, for one image, a band of its rows).
    epochs, patch_size, batch_size, n2v2, seed
        The usual N2V settings (see :class:`~jumpdenoise.config.train.TrainConfig`).
    trainer
        :class:`~jumpdenoise.config.train.TrainerSettings` values (default: no worker
        processes, since the images are in memory).
    callbacks
        Extra Lightning callbacks (e.g. a learning rate over wall time).
    noise_models
        Known noise per channel name (:class:`~jumpdenoise.quality.noise.NoiseVariance`, e.g.
        Gaussian noise of known sigma: ``a=0, b=sigma**2``); default: fitted on the validation images.
    estimate
        Estimate the gain on the validation images after training (``quality.json``); a caller
        that estimates per group of images itself passes ``False``.
    blend
        ``False``: what the model writes is the network's output alone (its output offset
        removed), not blended with the raw image; what a protocol that scores or exports the
        network itself needs (BSD).
    **overrides
        Other ``TrainConfig`` fields (``patches_per_epoch``, ``model``, ``n2v``, ...), and
        ``mean`` / ``std`` (per channel) to skip computing the normalisation.

    Returns
    -------
    Path of the run folder.
    """
    from jumpdenoise.config.train import TrainConfig
    from jumpdenoise.train.fields import arrays_to_refs, check_patch_fits, split_fields
    from jumpdenoise.train.loop import TrainingSetup, fit, write_run_header
    from jumpdenoise.train.phase_choice import resolve_phase_split
    from jumpdenoise.train.plate_patches import arrays_mean_std
    from jumpdenoise.train.run_folder import RunFolder

    imgs = as_cyx_list(images)
    vals = as_cyx_list(val_images, "val_images") if val_images is not None else None
    n_c = imgs[0].shape[0]
    names = list(channels) if channels is not None else [f"c{i}" for i in range(n_c)]
    if len(names) != n_c:
        raise ConfigError(f"channels: {len(names)} names {names} for images with {n_c} channel(s)")
    if vals is not None and vals[0].shape[0] != n_c:
        raise ConfigError(f"val_images have {vals[0].shape[0]} channel(s), images have {n_c}")
    mean, std = overrides.pop("mean", None), overrides.pop("std", None)
    n2v = {"n2v2": n2v2, **overrides.pop("n2v", {})}
    try:
        tc = TrainConfig.model_validate({
            "channels": names, "epochs": epochs, "patch_size": patch_size, "batch_size": batch_size,
            "seed": seed, "n2v": n2v, "trainer": {"num_workers": 0, **(trainer or {})}, **overrides})
    except ValidationError as err:
        from jumpdenoise.config import _format_validation_error

        raise ConfigError(_format_validation_error(err, "train_on_arrays arguments")) from None
    refs = arrays_to_refs(imgs)
    val_refs = arrays_to_refs(vals, "val-image") if vals is not None else None
    check_patch_fits(refs + (val_refs or []), tc.patch_size, "the images")
    split = split_fields(refs, seed=tc.seed, val_fraction=tc.val_fraction, patch_size=tc.patch_size,
                         val_refs=val_refs)
    if mean is None or std is None:
        mean, std = arrays_mean_std([r.load() for r in split.train])
        source = f"computed from {len(split.train)} training image(s)"
    else:
        source = "given"
    if len(mean) != n_c or len(std) != n_c:
        raise ConfigError(f"mean/std: need {n_c} value(s) each, got {len(mean)} and {len(std)}")
    phase, phase_record = resolve_phase_split(run_dir, tc.n2v.phase_split, split.train, names)
    check_patch_fits(split.train + split.val, tc.patch_size, "the images", phase)
    resolved = {"train": tc.model_dump(mode="json"),
                "data": {"kind": "arrays", "n_images": len(imgs), "shapes": [list(a.shape) for a in imgs],
                         "dtype": str(imgs[0].dtype), "n_val_images": 0 if vals is None else len(vals)}}
    setup = TrainingSetup(tc=tc, run=RunFolder(Path(run_dir)), train_refs=split.train, val_refs=split.val,
                          channels=names, mean=[float(m) for m in mean], std=[float(s) for s in std],
                          norm_source=source, split=split.record, data_type="array", resolved_config=resolved,
                          phase_split=phase, phase_record=phase_record)
    write_run_header(setup)
    run = fit(setup, extra_callbacks=callbacks)
    if estimate:
        from jumpdenoise.quality.gain import estimate_if_stale

        estimate_if_stale(run, split.val, names, noise_models=noise_models, seed=tc.seed, blend=blend)
    return run
