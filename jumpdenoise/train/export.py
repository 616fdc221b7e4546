"""Load a trained model from a run folder, and export it to the BioImage Model Zoo format.

The export is CAREamics' own (``CAREamist.export_to_bmz``): the archive holds the UNet
weights, the CAREamics configuration (with the normalisation mean/std) and the channel
names; ``careamics.CAREamist(bmz_path=...)`` loads it back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from jumpdenoise.errors import ModelError
from jumpdenoise.scratch import contained_tempdir
from jumpdenoise.train.run_folder import RunFolder, best_checkpoint

log = logging.getLogger("jumpdenoise.train")

EXAMPLE_INPUT = "example_input.npy"


def example_crop(field: np.ndarray, depth: int, size: int = 256) -> np.ndarray:
    """A ``(1, c, s, s)`` crop of a ``(c, y, x)`` field, ``s`` a multiple of ``2**depth``."""
    step = 2 ** depth
    s = min(size, field.shape[1], field.shape[2]) // step * step
    return np.ascontiguousarray(field[None, :, :s, :s])


def load_model(run_or_checkpoint: str | Path) -> tuple[Any, Any, dict]:
    """Load the UNet of a run (best checkpoint) or of a checkpoint file.

    Returns
    -------
    (torch.nn.Module in eval mode, CAREamics Configuration, normalisation dict)

    Raises
    ------
    ModelError
        If the run folder or checkpoint is incomplete.
    """
    import torch
    from careamics.config.utils.configuration_io import load_configuration
    from careamics.models.model_factory import model_factory

    p = Path(run_or_checkpoint)
    ckpt = best_checkpoint(p) if p.is_dir() else p
    run = RunFolder(ckpt.parent.parent)
    if not run.careamics_config.is_file() or not run.normalization.is_file():
        raise ModelError(f"{run.path}: not a training run folder (no careamics_config.yaml / normalization.json)")
    config = load_configuration(run.careamics_config)
    model = model_factory(config.algorithm_config.model)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    return model.eval(), config, json.loads(run.normalization.read_text())


def export_run(run_dir: str | Path, out: str | Path | None = None, *, checkpoint: str | Path | None = None,
               authors: list[dict] | None = None) -> Path:
    """Export the best model of a run as a BioImage Model Zoo zip.

    Parameters
    ----------
    run_dir
        Training run folder.
    out
        Output ``.zip`` (default ``RUN/export/model.zip``).
    checkpoint
        Checkpoint to export (default: the best one, from best.json).
    authors
        BMZ authors (default: ``[{"name": "jumpdenoise"}]``).

    Returns
    -------
    Path of the archive.
    """
    from careamics import CAREamist

    run = RunFolder(Path(run_dir))
    ckpt = Path(checkpoint) if checkpoint else best_checkpoint(run.path)
    example = run.path / EXAMPLE_INPUT
    if not example.is_file():
        raise ModelError(f"{run.path}: {EXAMPLE_INPUT} missing (written when training starts)")
    norm = json.loads(run.normalization.read_text())
    out = Path(out) if out else run.export_dir / "model.zip"
    if out.suffix != ".zip":
        raise ModelError(f"--out {out}: a BioImage Model Zoo archive must end in .zip")
    out.parent.mkdir(parents=True, exist_ok=True)
    # CAREamist writes logs into its work_dir; bioimageio leaves cover images and packages in mkdtemp folders
    with contained_tempdir() as work:
        careamist = CAREamist(checkpoint_path=ckpt, work_dir=work, enable_progress_bar=False)
        _export(careamist, out, ckpt, norm, authors, example)
    log.info("exported %s to %s", ckpt, out)
    return out


def _export(careamist: Any, out: Path, ckpt: Path, norm: dict, authors: list[dict] | None,
            example: Path) -> None:
    name = careamist.config.get_safe_experiment_name()
    channels = ", ".join(norm["channels"])
    stats = "; ".join(f"{c}: mean {m:.4g}, std {s:.4g}" for c, m, s in zip(norm["channels"], norm["mean"], norm["std"]))
    careamist.export_to_bmz(
        path_to_archive=out, friendly_model_name=name,
        input_array=np.load(example).astype(np.float32), authors=authors or [{"name": "jumpdenoise"}],
        general_description=(f"Noise2Void denoiser trained with jumpdenoise on channels {channels}; "
                             f"checkpoint {ckpt.name}."),
        data_description=f"Normalisation (per channel, from {norm.get('source')}): {stats}.",
        channel_names=list(norm["channels"]))
