"""Configuration of prediction (the ``predict`` section of the config tree).

The input plate is ``paths.raw_plate``, the output ``paths.denoised_plate``, and the model
``predict.model`` (default ``paths.run_dir``).

Output dtype:

``"float32"``
    The denormalised network output, unchanged (default; lossless).
``"source"``
    The source plate's dtype (e.g. uint16): the denormalised output is rounded to the
    nearest integer (halves to even, ``numpy.rint``), clipped to the dtype's range (e.g.
    0..65535) and cast. Half the storage of float32; denoised values below 0 or above the
    range are lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class PredictExperimental(BaseModel):
    """Benchmark-only switches of prediction (``predict.experimental``).

    Without them, prediction runs the fastest path measured on each kind of device (README,
    "Benchmarks"): the network variant, CUDA graphs (with an eager fallback when a graph
    cannot be captured or differs from the eager pass), writer processes and read-ahead are
    chosen automatically. ``benchmarks/predict.py`` and ``benchmarks/predict_io.py`` set
    these to measure the alternatives; they are not a supported interface and may change.

    Attributes
    ----------
    compile
        ``torch.compile`` the network (slow first call).
    network_variant
        ``"auto"`` (the measured winner per device: fused oneDNN ops on the CPU, see
        :data:`jumpdenoise.predict.network_variants.CUDA_AUTO_VARIANT` on CUDA), or a baseline:
        ``"grouped"`` (the network as it is), ``"channels_last"``, ``"split"`` (one dense
        sub-network per independent channel). Outputs equal up to float rounding.
    autotune
        CUDA: let cuDNN pick its fastest algorithms (outputs no longer guaranteed
        bit-identical between jobs). Off: deterministic cuDNN.
    cuda_graphs
        ``None``: CUDA graphs on CUDA without ``compile``; ``False``: eager.
    wells_per_unit
        Wells per unit (one SLURM array task / Dask task each; the in-process executor
        streams all units through one pipeline, so there it only sets how often progress
        is reported).
    prefetch
        Fields read ahead while the device computes (and fields waiting to be written).
    io_threads
        Threads reading and writing fields (default: up to 8, from the CPUs available).
    write_processes
        ``"auto"``: ``min(8, CPUs - 2)`` writer processes fed through shared memory on CUDA
        with at least 4 CPUs, writer threads otherwise; ``0``: threads; ``n``: ``n``
        processes. Same bytes on disk either way.
    """

    model_config = ConfigDict(extra="forbid")

    compile: bool = False
    network_variant: Literal["auto", "grouped", "channels_last", "split"] = "auto"
    autotune: bool = False
    cuda_graphs: bool | None = None
    wells_per_unit: int = Field(default=8, ge=1)
    prefetch: int = Field(default=6, ge=1, le=64)
    io_threads: int | None = Field(default=None, ge=1, le=64)
    write_processes: Literal["auto"] | Annotated[int, Field(ge=0, le=64)] = "auto"


class PredictConfig(BaseModel):
    """How a plate is denoised.

    Attributes
    ----------
    model
        Run folder, ``.ckpt`` or BioImage Model Zoo ``.zip`` (default: ``paths.run_dir``).
    checkpoint
        Run folders: ``"best"`` (best.json, else last.ckpt), ``"last"`` or a path.
    wells
        Wells to denoise (default: all). The output plate holds only these wells.
    fields
        Field indices to denoise in each well (default: all). Other fields of the
        selected wells stay empty (zeros) in the output and are not marked done.
    tile_size
        Tile side in pixels (rounded up to the network's stride); ``None`` predicts whole
        fields (fastest when they fit in memory: no overlap is computed twice).
    overlap
        Tile overlap; ``None`` takes the smallest one giving exact stitching (twice the
        model's measured receptive-field radius, rounded up to the stride).
    blending
        ``"crop"`` keeps the centre of each tile; ``"blend"`` mixes neighbours with cosine
        ramps outside a guard band of one receptive-field radius. Both are exact when the
        overlap is large enough.
    batch_size
        Tiles per forward pass (one field's tiles per batch; the last batch is padded).
    dtype
        ``"float32"`` or ``"source"`` (see the module docstring).
    bf16
        bfloat16 autocast on the device (faster; the output differs slightly from fp32).
    tta
        Test-time augmentation: average over the 8 flips/rotations (8x the compute).
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    overwrite
        Replace an output that jumpdenoise wrote and recognises (a jumpdenoise plate, or an
        empty folder); nothing else is ever removed (it is refused with an error).
        Without it, an output prepared by the same model and settings is resumed; any other
        existing output is refused.
    allow_worse
        Predict even when the model's estimated gain (``quality.json`` of its run folder,
        written after training) is <= 0 dB on a channel, i.e. the denoised channel would be
        further from the truth than the raw one. Default: ``predict`` warns naming the channel,
        and ``run`` / ``submit`` stop before the predict stage.
    truth
        Ground-truth folder of the raw plate (``<WELL>-<FIELD>.npy`` + ``truth.json``, see
        :mod:`jumpdenoise.quality.truth`) for the report. Default: the ``ground_truth`` folder
        next to the source plate, when there is one.
    skip_missing
        Denoise the selected fields the raw plate marks complete and leave out the others
        (listed in a warning). Default: a selected field the raw plate does not mark
        complete (its conversion failed or has not run) is an error, and nothing is denoised.
    experimental
        Benchmark-only switches (:class:`PredictExperimental`); leave them out.
    """

    model_config = ConfigDict(extra="forbid")

    model: Path | None = None
    checkpoint: str | None = None
    wells: list[str] | None = None
    fields: list[int] | None = None
    tile_size: int | None = Field(default=None, ge=16)
    overlap: int | None = Field(default=None, ge=0)
    blending: Literal["crop", "blend"] = "crop"
    batch_size: int = Field(default=8, ge=1)
    dtype: Literal["float32", "source"] = "float32"
    bf16: bool = False
    tta: bool = False
    device: str = "auto"
    overwrite: bool = False
    allow_worse: bool = False
    truth: Path | None = None
    skip_missing: bool = False
    experimental: PredictExperimental = Field(default_factory=PredictExperimental)

    @model_validator(mode="before")
    @classmethod
    def _experimental_only(cls, data: object) -> object:
        if isinstance(data, dict):
            moved = [k for k in data if k in PredictExperimental.model_fields]
            if moved:
                raise ValueError(f"predict.{moved[0]}: a benchmark-only switch, set as predict.experimental.{moved[0]} "
                                 "(the default is the measured-fastest path)")
        return data

    @field_validator("wells")
    @classmethod
    def _canonical_wells(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        from jumpdenoise.io.layout import split_well, well_id

        out = []
        for w in value:
            try:
                out.append(well_id(*split_well(str(w))))
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        if not out:
            raise ValueError("an empty list selects no well (leave it out to select all)")
        return out

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 0):
            raise ValueError(f"field indices must be >= 0 and at least one, got {value}")
        return None if value is None else sorted(set(value))

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        v = value.strip().lower()
        if v not in ("auto", "cpu", "cuda", "mps") and not v.startswith("cuda:"):
            raise ValueError(f"unknown device {value!r} (auto, cpu, cuda, cuda:N)")
        return v
