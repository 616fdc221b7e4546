"""The evaluate stage: does denoising keep the biology? One unit per well.

Optional: it runs only when the configuration has an ``evaluate`` section
(:class:`~jumpdenoise.config.evaluate.EvaluateConfig`). It accepts the full
:class:`~jumpdenoise.config.JumpDenoiseConfig` (raw and denoised plates from ``paths``, ground
truth from ``evaluate.truth`` or found next to the source plate, output in
``<workdir>/evaluate``) or an :class:`EvaluateRequest` naming everything (the
``jumpdenoise evaluate`` command). Each unit (:func:`jumpdenoise.evaluate.well.evaluate_well`)
writes ``wells/<WELL>.features.csv.gz`` then ``wells/<WELL>.json`` (the well's completion
marker, so a rerun resumes); ``finalize`` compares the versions and writes the report
(:mod:`jumpdenoise.evaluate.report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from jumpdenoise.config.evaluate import EvaluateConfig
from jumpdenoise.errors import ConfigError, PlateError
from jumpdenoise.stages.base import Unit
from jumpdenoise.stages.session import PlateSession

STAGE = "evaluate"
WELLS_DIR = "wells"


class EvaluateRequest(BaseModel):
    """Accepted in place of the full configuration: evaluate ``denoised`` against ``raw``.

    Attributes
    ----------
    raw, denoised
        The plates.
    out
        Output folder.
    truth
        Ground-truth folder, or ``None``.
    settings
        What to segment and measure (its ``truth``, ``out`` are ignored here).
    """

    model_config = ConfigDict(frozen=True)

    raw: Path
    denoised: Path
    out: Path
    truth: Path | None = None
    settings: EvaluateConfig = EvaluateConfig()


def is_enabled(config: Any) -> bool:
    """Whether the pipeline should run this stage (an ``evaluate`` section is present)."""
    return isinstance(config, EvaluateRequest) or getattr(config, "evaluate", None) is not None


def request_of(config: Any) -> EvaluateRequest:
    """The :class:`EvaluateRequest` a configuration describes.

    Raises
    ------
    ConfigError
        If the configuration has no ``evaluate`` section.
    """
    if isinstance(config, EvaluateRequest):
        return config
    from jumpdenoise.quality.truth import truth_dir_beside

    settings = getattr(config, "evaluate", None)
    if settings is None:
        raise ConfigError("the configuration has no 'evaluate' section")
    workdir = Path(config.paths.workdir)
    truth = settings.truth
    if truth is None and getattr(config, "source", None) is not None:
        truth = truth_dir_beside(config.source.path)
    elif truth is not None and not Path(truth).is_absolute():
        truth = workdir / truth
    out = settings.out or workdir / "evaluate"
    out = out if Path(out).is_absolute() else workdir / out
    return EvaluateRequest(raw=config.paths.raw_plate, denoised=config.paths.denoised_plate, out=out,
                           truth=truth, settings=settings)


def channels_of(request: EvaluateRequest) -> list[str]:
    """The channels measured, checked against both plates (and the segmentation channels).

    Raises
    ------
    ConfigError
        If a channel named in the settings is not in both plates (the message lists the plate's channels).
    """
    from jumpdenoise.io.ngff import plate_info

    raw, den = plate_info(request.raw).channels, plate_info(request.denoised).channels
    common = [c for c in raw if c in den]
    settings = request.settings
    for key, name in (("nuclei_channel", settings.nuclei_channel), ("cells_channel", settings.cells_channel),
                      *(("channels", c) for c in settings.channels or [])):
        if name not in common:
            plate = request.raw if name not in raw else request.denoised
            have = raw if name not in raw else den
            raise ConfigError(f"evaluate.{key}: no channel {name!r} in {plate} (channels: {have})")
    chosen = list(settings.channels) if settings.channels else common
    for name in (settings.nuclei_channel, settings.cells_channel):
        if name not in chosen:
            chosen.append(name)
    return chosen


def divisors_of(request: EvaluateRequest, channels: list[str]) -> list[float]:
    """Per channel, what pixels are divided by before measuring (see ``intensity_scale``).

    Raises
    ------
    PlateError
        If ``plate_max`` is asked for and the raw plate has no statistics of a channel.
    """
    from jumpdenoise.io.ngff import plate_info

    if request.settings.intensity_scale == "divisor":
        return [request.settings.intensity_divisor] * len(channels)
    stats = (plate_info(request.raw).statistics or {}).get("plate", {})
    missing = [c for c in channels if not (stats.get(c) or {}).get("max")]
    if missing:
        raise PlateError(f"{request.raw}: no statistics (max) of channel(s) {missing}; run `jumpdenoise stats "
                         f"{request.raw}` or set evaluate.intensity_scale: divisor")
    return [float(stats[c]["max"]) for c in channels]


def wells_of(request: EvaluateRequest) -> dict[str, list[int]]:
    """Well -> fields evaluated: present in both plates, restricted by ``settings.wells`` / ``fields``.

    Raises
    ------
    PlateError
        If a requested well or field is in neither plate, or nothing is left to evaluate.
    """
    from jumpdenoise.io.ngff import plate_info

    raw, den = plate_info(request.raw).wells, plate_info(request.denoised).wells
    wells = {w: [f for f in fields if f in den[w]] for w, fields in raw.items() if w in den}
    settings = request.settings
    if settings.wells is not None:
        missing = [w for w in settings.wells if w not in wells]
        if missing:
            raise PlateError(f"well(s) {missing} not in both {request.raw} and {request.denoised} "
                             f"(wells: {sorted(wells)})")
        wells = {w: wells[w] for w in settings.wells}
    if settings.fields is not None:
        wells = {w: [f for f in fields if f in settings.fields] for w, fields in wells.items()}
    wells = {w: fields for w, fields in wells.items() if fields}
    if not wells:
        raise PlateError(f"no (well, field) present in both {request.raw} and {request.denoised} to evaluate")
    return wells


def prepare(config: Any, session: PlateSession) -> None:
    """Check the plates, channels, wells and truth folder (errors name the value at fault)."""
    request = request_of(config)
    divisors_of(request, channels_of(request))
    wells_of(request)
    if request.truth is not None and not Path(request.truth).is_dir():
        raise PlateError(f"ground-truth folder not found: {request.truth}")
    (request.out / WELLS_DIR).mkdir(parents=True, exist_ok=True)


def plan(config: Any) -> list[Unit]:
    """One unit per well not yet evaluated in ``<out>/wells``."""
    request = request_of(config)
    done = request.out / WELLS_DIR
    return [Unit(stage=STAGE, key=w, items=[f"{w}/{f}" for f in fields])
            for w, fields in wells_of(request).items() if not (done / f"{w}.json").is_file()]


def run_one(config: Any, unit: Unit, session: PlateSession) -> dict:
    """Evaluate the fields of one well (see :func:`jumpdenoise.evaluate.well.evaluate_well`)."""
    from jumpdenoise.evaluate.well import Sources, evaluate_well

    request = request_of(config)
    channels = channels_of(request)
    sources = Sources(raw=request.raw, denoised=request.denoised, truth=request.truth, channels=channels,
                      divisors=divisors_of(request, channels))
    fields = [int(item.split("/")[1]) for item in unit.items]
    return evaluate_well(sources, unit.key, fields, request.settings, request.out / WELLS_DIR)


def finalize(config: Any, results: list[dict] | None, session: PlateSession) -> dict:
    """Compare the versions over every evaluated well and write the report; returns its summary."""
    from jumpdenoise.evaluate.report import write_report

    request = request_of(config)
    return write_report(request.out, wells=list(wells_of(request)), raw=request.raw, denoised=request.denoised,
                        truth=request.truth)


def evaluate_plates(raw: str | Path, denoised: str | Path, out: str | Path, *, truth: str | Path | None = None,
                    settings: EvaluateConfig | None = None, executor: Any = None) -> dict:
    """Evaluate ``denoised`` against ``raw`` (and ``truth``), writing the report into ``out``.

    Returns
    -------
    dict
        The report's summary (see :func:`jumpdenoise.evaluate.report.write_report`).

    Raises
    ------
    UnitFailures
        If some wells failed (the others are kept for a rerun).
    """
    from jumpdenoise.driver import run_stage
    from jumpdenoise.stages.base import EVALUATE

    request = EvaluateRequest(raw=Path(raw), denoised=Path(denoised), out=Path(out),
                              truth=Path(truth) if truth is not None else None, settings=settings or EvaluateConfig())
    return run_stage(EVALUATE, request, executor).summary
