"""The train stage: N2V on an OME-Zarr plate (one unit = the whole training).

``prepare`` checks the plate and selection and writes the run folder's description;
``plan`` returns the one unit, or nothing when the run has trained all its epochs;
``run_one`` trains (resuming from ``last.ckpt``); ``finalize`` draws the curves.
Lightning starts the other DDP processes itself (or SLURM starts them with srun): every
rank rebuilds the same :class:`~jumpdenoise.train.loop.TrainingSetup` from the config, and
only rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jumpdenoise.stages.base import Unit
from jumpdenoise.stages.session import PlateSession

STAGE = "train"


def build_training_setup(config: Any) -> Any:
    """The :class:`~jumpdenoise.train.loop.TrainingSetup` of ``config``.

    No pixels are read when the plate has statistics, except, the first time for a run folder
    with ``train.n2v.phase_split: auto``, up to 4 training fields whose noise correlation decides
    the phase split (:func:`jumpdenoise.train.phase_choice.resolve_phase_split`).
    """
    from jumpdenoise.train.fields import check_patch_fits, split_fields
    from jumpdenoise.train.loop import TrainingSetup
    from jumpdenoise.train.phase_choice import resolve_phase_split
    from jumpdenoise.train.plate_patches import plate_fields, plate_normalization
    from jumpdenoise.train.run_folder import RunFolder

    tc = config.train
    plate = Path(tc.plate or config.paths.raw_plate)
    info, channels, refs = plate_fields(plate, channels=tc.channels, wells=tc.wells, fields=tc.fields)
    check_patch_fits(refs, tc.patch_size, f"plate {plate}")
    split = split_fields(refs, seed=tc.seed, val_fraction=tc.val_fraction, patch_size=tc.patch_size,
                         val_groups=tc.val_wells)
    mean, std, source = plate_normalization(info, channels, split.train)
    phase, phase_record = resolve_phase_split(config.paths.run_dir, tc.n2v.phase_split, split.train, channels)
    check_patch_fits(split.train + split.val, tc.patch_size, f"plate {plate}", phase)
    resolved = {"train": tc.model_dump(mode="json"),
                "plate": {"path": str(plate), "name": info.name, "channels": channels,
                          "shape_yx": list(info.shape_yx), "dtype": info.dtype}}
    resolved["train"]["plate"] = str(plate)
    resolved["train"]["channels"] = channels
    return TrainingSetup(tc=tc, run=RunFolder(Path(config.paths.run_dir)), train_refs=split.train,
                         val_refs=split.val, channels=channels, mean=mean, std=std, norm_source=source,
                         split=split.record, data_type="zarr", resolved_config=resolved, phase_split=phase,
                         phase_record=phase_record)


def prepare(config: Any, session: PlateSession) -> None:
    """Check the plate, channels, wells and patch size; write the run folder header (rank 0)."""
    from jumpdenoise.train.loop import write_run_header

    write_run_header(build_training_setup(config))


def plan(config: Any) -> list[Unit]:
    """One unit (the training), or none when the run folder has trained every epoch."""
    from jumpdenoise.train.run_folder import RunFolder, epochs_done

    run = RunFolder(Path(config.paths.run_dir))
    if epochs_done(run) >= config.train.epochs:
        return []
    return [Unit(stage=STAGE, key="train", items=[str(run.path)])]


def run_one(config: Any, unit: Unit, session: PlateSession) -> dict:
    """Train (or resume) and return the run folder and best checkpoint."""
    from jumpdenoise.train.loop import fit
    from jumpdenoise.train.run_folder import run_checkpoint

    run = fit(build_training_setup(config))
    return {"run_dir": str(run), "best": str(run_checkpoint(run))}


def finalize(config: Any, results: list[dict], session: PlateSession) -> None:
    """Draw curves.png from curves.csv and estimate the model's gain on held-out fields (rank 0).

    The gain (:func:`jumpdenoise.quality.gain.estimate_after_training`: masked N2V error minus
    the noise variance, on up to 4 validation fields, on the CPU) goes to ``<run>/quality.json``.
    """
    from jumpdenoise.quality.gain import estimate_after_training
    from jumpdenoise.train.run_folder import RunFolder, is_global_zero, plot_curves

    if is_global_zero():
        plot_curves(RunFolder(Path(config.paths.run_dir)))
        estimate_after_training(config, build_training_setup(config))


def train(config: Any) -> Path:
    """Train (resuming when possible) through the stage driver; return the run folder.

    Parameters
    ----------
    config
        A :class:`~jumpdenoise.config.JumpDenoiseConfig`.
    """
    from jumpdenoise.driver import run_stage
    from jumpdenoise.stages.base import TRAIN

    run_stage(TRAIN, config)
    return Path(config.paths.run_dir)
