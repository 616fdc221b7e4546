"""Export a trained model to the BioImage Model Zoo format.

The model is read by :func:`jumpdenoise.predict.model.load_model` (digests checked). The
export (:func:`export_run`, built by :mod:`jumpdenoise.train.bmz`) holds torchscript weights
that run with torch alone and the CAREamics state dict, which
``careamics.CAREamist(bmz_path=...)`` and ``jumpdenoise predict`` load back.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path

import numpy as np

from jumpdenoise.errors import ModelError
from jumpdenoise.train.run_folder import RunFolder

log = logging.getLogger("jumpdenoise.train")

EXAMPLE_INPUT = "example_input.npy"
#: A GitHub user name: letters, digits and single inner hyphens, at most 39 characters.
GITHUB_USER = re.compile(r"(?=.{1,39}$)[A-Za-z0-9]+(-[A-Za-z0-9]+)*")


def example_crop(field: np.ndarray, depth: int, size: int = 256) -> np.ndarray:
    """A ``(1, c, s, s)`` crop of a ``(c, y, x)`` field, ``s`` a multiple of ``2**depth``."""
    step = 2 ** depth
    s = min(size, field.shape[1], field.shape[2]) // step * step
    return np.ascontiguousarray(field[None, :, :s, :s])


def export_run(run_dir: str | Path, out: str | Path | None = None, *, checkpoint: str | Path | None = None,
               name: str | None = None, authors: list[str] | None = None,
               description: str | None = None, maintainers: list[str] | None = None) -> Path:
    """Export the best model of a run as a BioImage Model Zoo zip (:mod:`jumpdenoise.train.bmz`).

    Parameters
    ----------
    run_dir
        Training run folder.
    out
        Output ``.zip`` (default ``RUN/export/model.zip``).
    checkpoint
        Checkpoint to export (default: the best one, from best.json).
    name
        Model name (default: the run's experiment name); completed to the 5 characters the
        BMZ spec asks for, other characters than letters, digits, ``_+- ()`` replaced.
    authors
        Author names (default: ``jumpdenoise developers``).
    description
        Model description (default: one naming the channels and the checkpoint).
    maintainers
        GitHub user names, written as the description's ``maintainers`` (default: none). The
        Model Zoo asks a published model for one, and it removes ``bioimageio test``'s one
        alert; the export does not look it up (it runs offline), ``bioimageio test`` does
        (online). See *GitHub user* in :mod:`jumpdenoise.train.bmz`.

    Returns
    -------
    Path of the archive.

    Raises
    ------
    ModelError
        If the run is incomplete, ``out`` is not a ``.zip``, a maintainer is not a GitHub user
        name, the model runs on phase sub-images (``train.n2v.phase_split``; a BMZ model is
        applied to whole images), or the exported model fails bioimageio.core's test.
    """
    from jumpdenoise.compat import load_careamics_configuration
    from jumpdenoise.predict.model import load_model
    from jumpdenoise.train.bmz import BmzInfo, write_bmz_package

    run = RunFolder(Path(run_dir))
    if not run.careamics_config.is_file():
        raise ModelError(f"{run.path}: not a training run folder (no {run.careamics_config.name})")
    example = run.path / EXAMPLE_INPUT
    if not example.is_file():
        raise ModelError(f"{run.path}: {EXAMPLE_INPUT} missing (written when training starts)")
    out = Path(out) if out else run.export_dir / "model.zip"
    if out.suffix != ".zip":
        raise ModelError(f"--out {out}: a BioImage Model Zoo archive must end in .zip")
    for user in maintainers or []:
        if not GITHUB_USER.fullmatch(str(user)):
            raise ModelError(f"--maintainer {user!r}: not a GitHub user name (letters, digits and inner hyphens, "
                             "at most 39 characters)")
    loaded = load_model(run.path, "cpu", checkpoint=str(Path(checkpoint).resolve()) if checkpoint else None)
    if loaded.phase_split > 1:
        raise ModelError(f"{run.path}: the model was trained on {loaded.phase_split}x{loaded.phase_split} phase "
                         f"sub-images (noise correlated between neighbouring pixels, {run.noise_correlation.name}); a "
                         "BioImage Model Zoo consumer would apply it to whole images. Predict with jumpdenoise from "
                         "the run folder, or train with train.n2v.phase_split: 1 for an exportable model")
    ckpt, model = loaded.checkpoint, loaded.module
    config = load_careamics_configuration(run.careamics_config)
    norm = json.loads(run.normalization.read_text())
    channels = [str(c) for c in loaded.channels or norm["channels"]]
    mean, std = [float(v) for v in loaded.mean], [float(v) for v in loaded.std]
    stats = "; ".join(f"{c}: mean {m:.4g}, std {s:.4g}" for c, m, s in zip(channels, mean, std))
    info = BmzInfo(
        name=name or config.experiment_name,
        description=description or (f"Noise2Void denoiser of Cell Painting channels {', '.join(channels)}, "
                                     f"trained with jumpdenoise (checkpoint {ckpt.name})."),
        authors=list(authors or []) or BmzInfo("", "").authors,
        data_description=f"Normalisation (per channel, from {norm.get('source')}): {stats}.",
        maintainers=[str(m) for m in maintainers or []])
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jd-export-") as work:
        files = Path(work) / "bmz"
        files.mkdir()
        write_bmz_package(out, model=model, careamics_config=config, channels=channels, mean=mean, std=std,
                          example=np.load(example), info=info, work=files, attachments=[run.normalization])
    log.info("exported %s to %s", ckpt, out)
    return out
