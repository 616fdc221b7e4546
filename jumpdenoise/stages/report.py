"""The report stage: raw vs denoised plate, per channel, as ``report.md`` + ``report.json``.

The last stage of the pipeline (:mod:`jumpdenoise.pipeline`): one unit that puts side by
side the statistics stored in both plates (mean, std, percentiles) and the noise estimates
of the raw-vs-denoised comparison the predict stage stored in the denoised plate
(:mod:`jumpdenoise.predict.compare`; estimated here on a few fields when it is absent),
plus the model's files, in ``<workdir>/report.md`` and ``<workdir>/report.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jumpdenoise.errors import PlateError
from jumpdenoise.stages.base import Unit

STAGE = "report"
SAMPLE_FIELDS = 4
COLUMNS = ("mean", "std", "p1", "p99")


def _plates(config: Any) -> tuple[Path, Path]:
    return Path(config.paths.raw_plate), Path(config.paths.denoised_plate)


def prepare(config: Any) -> None:
    """Check that both plates open (raises :class:`PlateError` naming the one that does not)."""
    from jumpdenoise.io.ngff import plate_info

    for plate in _plates(config):
        plate_info(plate)


def plan(config: Any) -> list[Unit]:
    """One unit: the report."""
    raw, den = _plates(config)
    return [Unit(stage=STAGE, key="report", items=[str(raw), str(den)])]


def _sample_noise(plate: Path, channels: list[str]) -> dict[str, float]:
    """Mean noise estimate of the first fields of ``plate``, per channel."""
    from jumpdenoise.io.ngff import plate_info, read_field
    from jumpdenoise.predict.compare import noise_sigma

    info = plate_info(plate)
    keys = [(w, f) for w, fields in info.wells.items() for f in fields][:SAMPLE_FIELDS]
    sums = {ch: 0.0 for ch in channels}
    for well, fld in keys:
        data = read_field(plate, well, fld)
        for i, ch in enumerate(info.channels):
            if ch in sums:
                sums[ch] += noise_sigma(data[i])
    return {ch: sums[ch] / max(1, len(keys)) for ch in channels}


def build_report(raw: Path, denoised: Path) -> dict:
    """Per-channel comparison of the two plates (statistics and noise estimates)."""
    from jumpdenoise.io.ngff import plate_info

    infos = {"raw": plate_info(raw), "denoised": plate_info(denoised)}
    channels = [c for c in infos["raw"].channels if c in infos["denoised"].channels]
    if not channels:
        raise PlateError(f"{raw} and {denoised} share no channel name")
    stored = (infos["denoised"].attrs.get("comparison") or {}).get("plate", {})
    if all(ch in stored for ch in channels):
        noise = {k: {ch: stored[ch].get(f"{k}_noise") for ch in channels} for k in infos}
        estimator = infos["denoised"].attrs["comparison"].get("noise_estimator", "predict stage")
    else:
        noise = {k: _sample_noise(Path(info.path), channels) for k, info in infos.items()}
        estimator = f"jumpdenoise.predict.compare.noise_sigma, mean over the first {SAMPLE_FIELDS} fields"
    rows = {}
    for ch in channels:
        row: dict[str, Any] = {}
        for kind, info in infos.items():
            plate_stats = (info.statistics or {}).get("plate", {}).get(ch, {})
            for col in COLUMNS:
                row[f"{kind}_{col}"] = plate_stats.get(col)
            row[f"{kind}_noise_sigma"] = noise[kind][ch]
        raw_sigma, den_sigma = row["raw_noise_sigma"], row["denoised_noise_sigma"]
        row["noise_reduction"] = raw_sigma / den_sigma if raw_sigma and den_sigma else None
        rows[ch] = row
    return {"raw_plate": str(raw), "denoised_plate": str(denoised), "channels": rows, "noise_estimator": estimator}


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def render_markdown(report: dict, extra: dict | None = None) -> str:
    """The report as a Markdown table (one row per channel)."""
    head = ["channel"] + [f"{k} {c}" for k in ("raw", "denoised") for c in (*COLUMNS, "noise_sigma")]
    head.append("noise reduction")
    lines = ["# jumpdenoise report", "", f"- raw plate: `{report['raw_plate']}`",
             f"- denoised plate: `{report['denoised_plate']}`"]
    for k, v in (extra or {}).items():
        lines.append(f"- {k}: `{v}`")
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for ch, row in report["channels"].items():
        cells = [ch] + [_fmt(row[f"{k}_{c}"]) for k in ("raw", "denoised") for c in (*COLUMNS, "noise_sigma")]
        cells.append(_fmt(row["noise_reduction"]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"noise_sigma: {report['noise_estimator']}; noise reduction = raw / denoised noise."]
    return "\n".join(lines) + "\n"


def run_one(config: Any, unit: Unit) -> dict:
    """Write ``report.md`` and ``report.json`` into the run folder; return their paths."""
    raw, den = _plates(config)
    report = build_report(raw, den)
    extra = {}
    run_dir = Path(config.paths.run_dir)
    for name in ("checkpoints/last.ckpt", "curves.png", "curves.csv"):
        if (run_dir / name).exists():
            extra[name] = str(run_dir / name)
    report["model"] = extra
    out = Path(config.paths.workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(render_markdown(report, extra))
    return {"markdown": str(out / "report.md"), "json": str(out / "report.json")}


def finalize(config: Any, results: list) -> dict:
    """Nothing to merge; returns the paths of the report."""
    out = Path(config.paths.workdir)
    return {"markdown": str(out / "report.md"), "json": str(out / "report.json")}
