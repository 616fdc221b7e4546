"""Build the CAREamics ``Configuration`` (saved as ``careamics_config.yaml``) from ours.

The configuration is built with CAREamics' own ``create_advanced_n2v_config`` and then
completed (augmentation probabilities, N2V strategy), so CAREamics validates every value.
Normalisation is fixed to the per-channel mean/std computed once (plate statistics), and the
checkpoint policy is the notes' (top-k by val_loss + last), not CAREamics' default.
"""

from __future__ import annotations

from typing import Any

from jumpdenoise.config.train import TrainConfig
from jumpdenoise.errors import ConfigError


def build_careamics_config(tc: TrainConfig, *, n_channels: int, mean: list[float], std: list[float],
                           data_type: str = "array", world_size: int = 1) -> Any:
    """Return the CAREamics N2V ``Configuration`` for ``tc``.

    Parameters
    ----------
    tc
        Our training configuration.
    n_channels
        Channels trained (input = output).
    mean, std
        Per-channel normalisation, stored in ``data_config.normalization``.
    data_type
        CAREamics data type recorded in the configuration. ``"array"`` (default, also for
        plates: jumpdenoise reads the plate itself) lets ``CAREamist.predict`` and
        ``CAREamist.export_to_bmz`` run on arrays, which a ``"zarr"`` configuration
        refuses (``in_memory`` must then be false).
    world_size
        DDP processes; scales the learning rate when
        ``tc.optimizer.scale_lr_with_world_size``.

    Raises
    ------
    ConfigError
        If CAREamics rejects a value (its message is kept).
    """
    from careamics.config import create_advanced_n2v_config
    from careamics.config.augmentations import XYFlipConfig, XYRandomRotate90Config

    lr = tc.optimizer.lr * (world_size if tc.optimizer.scale_lr_with_world_size else 1)
    model_params = tc.model.model_dump()
    model_params.pop("independent_channels")
    try:
        config = create_advanced_n2v_config(
            experiment_name=tc.experiment_name,
            data_type=data_type,
            axes="SCYX",
            patch_size=[tc.patch_size, tc.patch_size],
            batch_size=tc.batch_size,
            num_epochs=tc.epochs,
            n_channels=n_channels,
            augmentations=[],
            n_val_patches=tc.n_val_patches,
            independent_channels=tc.model.independent_channels,
            normalization="mean_std",
            normalization_params={"input_means": [float(m) for m in mean],
                                  "input_stds": [float(s) for s in std]},
            use_n2v2=tc.n2v.n2v2,
            roi_size=tc.n2v.roi_size,
            masked_pixel_percentage=tc.n2v.masked_pixel_percentage,
            struct_n2v_axes=tc.n2v.struct_mask_axes,
            struct_n2v_span=tc.n2v.struct_mask_span,
            num_workers=tc.trainer.num_workers,
            model_params=model_params,
            optimizer=tc.optimizer.name,
            optimizer_params={"lr": lr, **tc.optimizer.parameters},
            lr_scheduler=tc.lr_scheduler.name,
            lr_scheduler_params=dict(tc.lr_scheduler.parameters),
            monitor_metric="val_loss",
            checkpoint_params=tc.checkpoint.model_dump(),
            seed=tc.seed,
        )
        augs = []
        for a in tc.augmentations:
            if a.name == "XYFlip":
                augs.append(XYFlipConfig(flip_x=a.flip_x, flip_y=a.flip_y, p=a.p, seed=tc.seed))
            else:
                augs.append(XYRandomRotate90Config(p=a.p, seed=tc.seed))
        config.data_config.augmentations = augs
        if tc.n2v.strategy is not None:
            config.algorithm_config.n2v_config.strategy = tc.n2v.strategy
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        raise ConfigError(f"train: CAREamics rejects the configuration: {exc}") from None
    return config


def augmentation_dicts(tc: TrainConfig) -> list[dict]:
    """The augmentations as plain dicts for the patch stream."""
    return [a.model_dump() for a in tc.augmentations]
