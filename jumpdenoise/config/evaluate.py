"""Configuration of the feature evaluation (the optional ``evaluate`` section of the config tree).

The ``evaluate`` stage (:mod:`jumpdenoise.stages.evaluate`) segments nuclei and cells,
measures CellProfiler features with ``cp_measure`` on the raw, denoised and (when present)
ground-truth pixels of ``paths.raw_plate`` / ``paths.denoised_plate``, and writes its report
under ``<workdir>/evaluate`` (or ``out``). Without an ``evaluate`` section the stage is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FeatureFamily = Literal["intensity", "texture", "granularity", "radial_distribution", "correlation", "sizeshape"]
ALL_FAMILIES: tuple[str, ...] = ("intensity", "texture", "granularity", "radial_distribution", "correlation",
                                 "sizeshape")


class EvaluateConfig(BaseModel):
    """What the evaluation segments and measures.

    Attributes
    ----------
    nuclei_channel
        Channel (by name) nuclei are segmented from.
    cells_channel
        Channel (by name) cells are grown in (a cytoplasm / membrane stain).
    channels
        Channels measured (default: every channel present in both plates).
    families
        Feature families measured with ``cp_measure``.
    zernike
        Also measure the Zernike shape and radial-Zernike features (many columns, slower).
    costes
        Also measure the Costes colocalisation (seconds per field and channel pair).
    intensity_scale
        How pixels are brought to 0..1 before measuring (the same for every version):
        ``"plate_max"`` divides each channel by the raw plate's maximum (its stored
        statistics), so texture uses all 256 grey levels; ``"divisor"`` divides by
        ``intensity_divisor`` (65535: CellProfiler's reading of 16-bit images). Values are
        then clipped to 0..1.
    intensity_divisor
        The divisor of ``intensity_scale: divisor``.
    method
        Segmentation: ``"classical"`` (Otsu threshold + watershed, scikit-image, CPU) or
        ``"cellpose"`` (only when cellpose is installed and a GPU is present).
    min_nucleus_area
        Objects smaller than this (pixels) are dropped from the nuclei segmentation.
    iou_threshold
        IoU above which a segmented object matches a reference object (segmentation F1).
    truth
        Ground-truth folder (``<WELL>-<FIELD>.npy`` + ``truth.json``); default: the
        ``ground_truth`` folder next to the source plate's images, when it exists.
    wells, fields
        Restrict the evaluation (default: every well and field present in both plates).
    out
        Output folder (default ``<workdir>/evaluate``).
    """

    model_config = ConfigDict(extra="forbid")

    nuclei_channel: str = "DNA"
    cells_channel: str = "AGP"
    channels: list[str] | None = None
    families: list[FeatureFamily] = Field(default_factory=lambda: list(ALL_FAMILIES))
    zernike: bool = False
    costes: bool = False
    intensity_scale: Literal["plate_max", "divisor"] = "plate_max"
    intensity_divisor: float = Field(65535.0, gt=0)
    method: Literal["classical", "cellpose"] = "classical"
    min_nucleus_area: int = Field(30, ge=1)
    iou_threshold: float = Field(0.5, gt=0, lt=1)
    truth: Path | None = None
    wells: list[str] | None = None
    fields: list[int] | None = None
    out: Path | None = None

    @field_validator("families")
    @classmethod
    def _some_family(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one feature family is required")
        return list(dict.fromkeys(value))
