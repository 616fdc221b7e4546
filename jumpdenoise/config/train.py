"""Configuration of Noise2Void training (the ``train`` section of the config tree).

The N2V knobs mirror CAREamics' ``create_advanced_n2v_config`` (they become the CAREamics
``Configuration`` saved in the run folder); the data selection and the trainer settings are
ours, because jumpdenoise feeds CAREamics' Lightning module with its own plate-aware data
pipeline (see :mod:`jumpdenoise.train`).

Effective batch and learning rate: under DDP every rank draws ``batch_size`` patches per step,
so the effective batch is ``batch_size x devices x num_nodes``. The learning rate is kept as
configured unless ``optimizer.scale_lr_with_world_size`` is true, in which case it is
multiplied by the world size (linear scaling rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class N2VSettings(BaseModel):
    """N2V pixel manipulation (CAREamics ``algorithm_config.n2v_config``).

    Attributes
    ----------
    n2v2
        Use N2V2 (blur-pool UNet without the top skip connection, median replacement):
        removes checkerboard artefacts. Switching it on also switches ``strategy`` to
        ``median`` unless ``strategy`` is given.
    roi_size
        Side of the window a masked pixel's replacement value is drawn from (odd).
    masked_pixel_percentage
        PERCENT of pixels masked per patch (CAREamics' unit): 0.2 means 0.2 %, not 20 %.
    strategy
        ``uniform`` (N2V) or ``median`` (N2V2); ``None`` picks from ``n2v2``.
    struct_mask_axes
        structN2V mask (``none`` disables it).
    struct_mask_span
        Span of the structN2V mask.
    phase_split
        Train and predict on the ``s x s`` phase sub-images of every field (pixels ``s`` apart),
        for noise correlated between neighbouring pixels, which a one-pixel blind spot passes
        through. ``auto`` (default): 2 when the training fields' noise is measured to be
        correlated (:mod:`jumpdenoise.quality.correlation`: real Phenix fields are, with a
        neighbour correlation of about 0.45), else 1. The choice and the measurement are
        recorded in the run folder (``noise_correlation.json``).
    """

    model_config = ConfigDict(extra="forbid")

    n2v2: bool = False
    roi_size: int = Field(default=11, ge=3, le=21)
    masked_pixel_percentage: float = Field(default=0.2, gt=0, le=10)
    strategy: Literal["uniform", "median"] | None = None
    struct_mask_axes: Literal["none", "horizontal", "vertical", "cross", "square"] = "none"
    struct_mask_span: int = Field(default=5, ge=3, le=15)
    phase_split: Literal["auto", 1, 2] = "auto"

    @field_validator("roi_size", "struct_mask_span")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd (got {v})")
        return v


class UNetSettings(BaseModel):
    """CAREamics UNet parameters (``algorithm_config.model``)."""

    model_config = ConfigDict(extra="forbid")

    depth: int = Field(default=2, ge=1, le=5)
    num_channels_init: int = Field(default=32, ge=8)
    independent_channels: bool = True
    final_activation: Literal["None", "Sigmoid", "Softmax", "Tanh", "ReLU", "LeakyReLU"] = "None"
    use_batch_norm: bool = True
    residual: bool = False


class OptimizerSettings(BaseModel):
    """Optimizer (``algorithm_config.optimizer``).

    Attributes
    ----------
    name
        torch optimizer CAREamics supports.
    lr
        Learning rate.
    parameters
        Other optimizer arguments.
    scale_lr_with_world_size
        Multiply ``lr`` by the number of DDP processes (linear scaling rule); off by default.
    """

    model_config = ConfigDict(extra="forbid")

    name: Literal["Adam", "Adamax", "SGD"] = "Adam"
    lr: float = Field(default=1e-4, gt=0)
    parameters: dict[str, Any] = Field(default_factory=dict)
    scale_lr_with_world_size: bool = False


class SchedulerSettings(BaseModel):
    """Learning-rate scheduler (``algorithm_config.lr_scheduler``)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["ReduceLROnPlateau", "StepLR"] = "ReduceLROnPlateau"
    parameters: dict[str, Any] = Field(default_factory=dict)


class XYFlipSettings(BaseModel):
    """Random flip along x or y (CAREamics ``XYFlip``)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["XYFlip"] = "XYFlip"
    flip_x: bool = True
    flip_y: bool = True
    p: float = Field(default=0.5, ge=0, le=1)


class XYRotate90Settings(BaseModel):
    """Random 90-degree rotation in xy (CAREamics ``XYRandomRotate90``)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["XYRandomRotate90"] = "XYRandomRotate90"
    p: float = Field(default=0.5, ge=0, le=1)


Augmentation = Annotated[Union[XYFlipSettings, XYRotate90Settings], Field(discriminator="name")]


class CheckpointSettings(BaseModel):
    """Lightning ``ModelCheckpoint`` settings (top-k by val_loss + last)."""

    model_config = ConfigDict(extra="forbid")

    monitor: Literal["val_loss", "train_loss"] = "val_loss"
    mode: Literal["min", "max"] = "min"
    save_top_k: int = Field(default=3, ge=-1)
    save_last: bool = True


class TrainerSettings(BaseModel):
    """Lightning trainer and data loading.

    How a step runs is not a setting: N2V masking runs in the data workers
    (:class:`~jumpdenoise.train.masking.LoaderMasking`), the network runs channels-last,
    and on CUDA cuDNN autotunes its convolutions, Adam runs fused and, on one GPU, the
    step replays CUDA graphs (eager steps when a graph cannot be captured, logged).

    Attributes
    ----------
    accelerator
        ``auto``, ``cpu``, ``gpu``/``cuda``, ``mps``.
    devices
        Devices per node (``auto``: all visible; under SLURM: tasks per node).
    num_nodes
        Nodes (under SLURM it must equal the job's node count).
    strategy
        ``auto``, ``ddp``, ``ddp_spawn``... (DDP uses gloo on CPU, nccl on GPU).
    precision
        ``32-true``, ``bf16-mixed``, ``16-mixed``.
    num_workers
        Data-loading processes per rank (0: in the training process).
    persistent_workers
        Keep workers (and their field caches) between epochs.
    pin_memory
        Pin batches in page-locked memory (``None``: when training on a GPU).
    log_every_n_steps
        Lightning's logging interval.
    gradient_clip_val
        Clip gradients to this norm (``None``: no clipping).
    enable_progress_bar
        Show Lightning's progress bar.
    extra
        Other ``lightning.Trainer`` arguments.
    """

    model_config = ConfigDict(extra="forbid")

    accelerator: str = "auto"
    devices: int | Literal["auto"] = "auto"
    num_nodes: int = Field(default=1, ge=1)
    strategy: str = "auto"
    precision: Literal["32-true", "32", "bf16-mixed", "16-mixed", "bf16-true"] = "32-true"
    num_workers: int = Field(default=2, ge=0)
    persistent_workers: bool = True
    pin_memory: bool | None = None
    log_every_n_steps: int = Field(default=10, ge=1)
    gradient_clip_val: float | None = None
    enable_progress_bar: bool = True
    extra: dict[str, Any] = Field(default_factory=dict)


class TrainExperimental(BaseModel):
    """Switches for benchmarks and tests only: the defaults are the measured-fastest training.

    Attributes
    ----------
    cuda_graphs
        ``False``: eager training steps even where CUDA graphs can run (one GPU); the
        benchmark's ``no-graphs`` variant.
    channels_last
        ``False``: channels-first activations. Training then reproduces CAREamics' own
        trainer bit for bit (the parity test); channels-last changes the last bits of the
        convolutions.
    fused_adam
        ``False``: CAREamics' Adam as it builds it (``foreach``) on GPUs too, instead of the
        fused kernel; the benchmark's ``unfused`` variant.
    """

    model_config = ConfigDict(extra="forbid")

    cuda_graphs: bool = True
    channels_last: bool = True
    fused_adam: bool = True


class TrainConfig(BaseModel):
    """N2V training: model, data selection, trainer.

    Attributes
    ----------
    experiment_name
        CAREamics experiment name (letters, digits, ``_``, ``-``, spaces).
    plate
        OME-Zarr plate to train on (default: ``paths.raw_plate``).
    channels
        Channel NAMES to train on, in this order (default: all channels of the plate).
    wells, fields
        Wells (``A01``) and field indices to sample from (default: all).
    val_wells
        Wells held out for validation; default: ``val_fraction`` of the wells, seeded.
    val_fraction
        Fraction of wells (at least one) held out when ``val_wells`` is not given. With a
        single well the fields are split instead, and with a single field a band of rows
        at the bottom of the field (recorded in ``split.json``).
    seed
        Global seed: split, patch sampling (with rank and worker), masking, weights.
    patch_size
        Square patch side (power of 2, >= 8), taken from full-resolution level 0 only.
    batch_size
        Patches per step and rank.
    epochs
        Maximum number of epochs.
    patches_per_epoch
        Training patches per epoch over all ranks (default: as many as fit in the
        training fields without overlap).
    n_val_patches
        Fixed validation patches (drawn once, seeded).
    experimental
        Benchmark and test switches (:class:`TrainExperimental`); leave them out.
    """

    model_config = ConfigDict(extra="forbid")

    experiment_name: str = Field(default="n2v_jump_cell_painting_chwise", pattern=r"^[A-Za-z0-9_\- ]+$")
    plate: Path | None = None
    channels: list[str] | None = None
    wells: list[str] | None = None
    fields: list[int] | None = None
    val_wells: list[str] | None = None
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    seed: int = Field(default=1, ge=1)

    model: UNetSettings = Field(default_factory=UNetSettings)
    n2v: N2VSettings = Field(default_factory=N2VSettings)
    optimizer: OptimizerSettings = Field(default_factory=OptimizerSettings)
    lr_scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    augmentations: list[Augmentation] = Field(
        default_factory=lambda: [XYFlipSettings(), XYRotate90Settings()]
    )
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)

    patch_size: int = 64
    batch_size: int = Field(default=32, ge=1)
    epochs: int = Field(default=100, ge=1)
    patches_per_epoch: int | None = Field(default=None, ge=1)
    n_val_patches: int = Field(default=256, ge=1)
    experimental: TrainExperimental = Field(default_factory=TrainExperimental)

    @field_validator("patch_size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v < 8 or v & (v - 1):
            raise ValueError(f"must be a power of 2 and at least 8 (got {v})")
        return v

    @field_validator("channels", "wells", "val_wells")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("must not be empty (leave it out to use all)")
            dup = sorted({x for x in v if v.count(x) > 1})
            if dup:
                raise ValueError(f"duplicates {dup}")
        return v

    @model_validator(mode="after")
    def _val_wells_in_wells(self) -> "TrainConfig":
        if self.wells is not None and self.val_wells is not None:
            missing = [w for w in self.val_wells if w not in self.wells]
            if missing:
                raise ValueError(f"val_wells {missing} are not in wells {self.wells}")
        return self
