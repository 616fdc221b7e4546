"""The report stage: is the denoised plate better than the raw one? ``report.md`` + ``report.json``.

The last stage of the pipeline (:mod:`jumpdenoise.pipeline`): one unit that writes, in
``<workdir>``, per channel of the denoised plate:

- **against ground truth**, when the plate has one (:mod:`jumpdenoise.quality.truth`: the
  ``ground_truth`` folder next to the source plate, or ``predict.truth``): PSNR and SSIM of
  the raw and the denoised plate and their difference (the gain), means over up to
  :data:`~jumpdenoise.quality.truth.MAX_SCORED_FIELDS` fields; data range of a field: its
  truth's ``p99.9 - p0.1``;
- **the estimated gain** from the model's run folder (``quality.json``, computed after
  training on held-out fields without truth, :mod:`jumpdenoise.quality.gain`), when the run
  has one; both are shown when both exist;
- **the mean bias**: denoised mean against the true mean (with truth) or against the raw mean
  (without: the raw mean is an unbiased estimate of the true one), in %;
- a channel whose gain is <= 0 dB (the truth's when known, else a reliable estimate) is
  marked ``WORSE``;
- a figure per channel, ``report_figures/<channel>.png``: a crop of one field, raw |
  denoised | truth (when known), on the same display range (the truth's, else the raw
  crop's, 0.5-99.5th percentiles), linked from ``report.md``;
- diagnostics: plate statistics and the high-pass noise estimate of
  :func:`jumpdenoise.predict.compare.noise_sigma` (it falls when an image is blurred, so it
  is not a quality measure).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from jumpdenoise.errors import PlateError
from jumpdenoise.stages.base import Unit
from jumpdenoise.stages.session import PlateSession

STAGE = "report"
FIGURES = "report_figures"
SAMPLE_FIELDS = 4
CROP = 192
NOISE_LABEL = "high-pass noise estimate; falls when an image is blurred, not a quality measure"


def _plates(config: Any) -> tuple[Path, Path]:
    return Path(config.paths.raw_plate), Path(config.paths.denoised_plate)


def prepare(config: Any, session: PlateSession) -> None:
    """Check that both plates open (raises :class:`PlateError` naming the one that does not)."""
    from jumpdenoise.io.ngff import plate_info

    for plate in _plates(config):
        plate_info(plate)


def plan(config: Any) -> list[Unit]:
    """One unit: the report."""
    raw, den = _plates(config)
    return [Unit(stage=STAGE, key="report", items=[str(raw), str(den)])]


def _done_fields(plate: Path) -> list[tuple[str, int]]:
    from jumpdenoise.io.ngff import done_keys

    keys = sorted(done_keys(plate))
    return [(k.rsplit("-", 1)[0], int(k.rsplit("-", 1)[1])) for k in keys]


def _diagnostic_noise(raw: Path, denoised: Path, channels: list[str]) -> dict[str, dict[str, float]]:
    """High-pass noise estimate per channel: the predict stage's, else the mean over a few fields."""
    from jumpdenoise.io.ngff import plate_info, read_field
    from jumpdenoise.predict.compare import noise_sigma

    stored = (plate_info(denoised).attrs.get("comparison") or {}).get("plate", {})
    if all(ch in stored for ch in channels):
        return {ch: {"raw": stored[ch].get("raw_noise"), "denoised": stored[ch].get("denoised_noise")}
                for ch in channels}
    fields = _done_fields(denoised)[:SAMPLE_FIELDS]
    out = {ch: {"raw": 0.0, "denoised": 0.0} for ch in channels}
    for well, fld in fields:
        for kind, plate in (("raw", raw), ("denoised", denoised)):
            data = read_field(plate, well, fld, channels=channels)
            for i, ch in enumerate(channels):
                out[ch][kind] += noise_sigma(data[i]) / len(fields)
    return out


def _statistics(raw: Path, denoised: Path, channels: list[str]) -> dict[str, dict[str, Any]]:
    from jumpdenoise.io.ngff import plate_info

    out: dict[str, dict[str, Any]] = {ch: {} for ch in channels}
    for kind, plate in (("raw", raw), ("denoised", denoised)):
        stats = (plate_info(plate).statistics or {}).get("plate", {})
        for ch in channels:
            for col in ("mean", "std", "p1", "p99"):
                out[ch][f"{kind}_{col}"] = stats.get(ch, {}).get(col)
    return out


def _run_folder(config: Any, denoised: Path) -> Path | None:
    """The model's run folder: from the denoised plate's provenance, else ``paths.run_dir``."""
    from jumpdenoise.io.ngff import plate_info
    from jumpdenoise.quality.gain import run_folder_of

    source = ((plate_info(denoised).attrs.get("provenance") or {}).get("model") or {}).get("source")
    for candidate in (source, getattr(config.paths, "run_dir", None)):
        if candidate and Path(candidate).exists():
            run = run_folder_of(candidate)
            if run is not None:
                return run
    return None


def _safe_name(channel: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", channel) or "channel"


def _figures(raw: Path, denoised: Path, truth_dir: Path | None, channels: list[str], rows: dict,
             out_dir: Path) -> dict[str, str]:
    """One PNG per channel (raw | denoised | truth crop of one field); returns paths relative to the report."""
    from jumpdenoise.io.ngff import plate_info, read_field
    from jumpdenoise.plot import crop_panels
    from jumpdenoise.quality.truth import read_truth, scored_fields

    fields = scored_fields(denoised, truth_dir, 1) if truth_dir is not None else _done_fields(denoised)[:1]
    if not fields:
        return {}
    well, fld = fields[0]
    raw_f = read_field(raw, well, fld, channels=channels)
    den_f = read_field(denoised, well, fld, channels=channels)
    truth_f = read_truth(truth_dir, well, fld, channels, plate_info(raw).channels) if truth_dir is not None else None
    folder = out_dir / FIGURES
    folder.mkdir(parents=True, exist_ok=True)
    links = {}
    for i, ch in enumerate(channels):
        row = rows[ch]
        titles = ["raw", "denoised", "truth"]
        if row.get("truth"):
            titles[0] += f" {row['truth']['raw']['psnr']:.1f} dB"
            titles[1] += f" {row['truth']['denoised']['psnr']:.1f} dB"
        name = f"{FIGURES}/{_safe_name(ch)}.png"
        crop_panels(raw_f[i], den_f[i], None if truth_f is None else truth_f[i], titles=titles, crop_size=CROP,
                    suptitle=f"{ch}: well {well}, field {fld}" + ("  (WORSE than raw)" if row["worse"] else ""),
                    save=out_dir / name)
        links[ch] = name
    return links


def build_report(raw: Path, denoised: Path, *, truth_dir: Path | None = None, run_dir: Path | None = None,
                 figures_dir: Path | None = None) -> dict:
    """Per-channel quality of the denoised plate (see the module docstring).

    Parameters
    ----------
    raw, denoised
        The plates.
    truth_dir
        Ground-truth folder, or ``None``.
    run_dir
        The model's run folder (for ``quality.json``), or ``None``.
    figures_dir
        Where ``report_figures/`` is written; ``None``: no figures.
    """
    from jumpdenoise.io.ngff import plate_info
    from jumpdenoise.quality.gain import read_quality
    from jumpdenoise.quality.truth import plate_truth_scores

    raw_info, den_info = plate_info(raw), plate_info(denoised)
    channels = [c for c in den_info.channels if c in raw_info.channels]
    if not channels:
        raise PlateError(f"{raw} and {denoised} share no channel name")
    truth = plate_truth_scores(raw, denoised, truth_dir) if truth_dir is not None else {}
    quality = (read_quality(run_dir) if run_dir is not None else None) or {}
    estimated = quality.get("channels", {})
    stats = _statistics(raw, denoised, channels)
    noise = _diagnostic_noise(raw, denoised, channels)
    rows: dict[str, dict[str, Any]] = {}
    for ch in channels:
        est = estimated.get(ch)
        trusted = est if est and est.get("reliable", True) else None
        gain = truth[ch]["gain_db"] if ch in truth else (trusted or {}).get("gain_db")
        if ch in truth:
            bias, bias_ref = truth[ch]["denoised"]["bias_pct"], "truth"
        else:
            rm, dm = stats[ch].get("raw_mean"), stats[ch].get("denoised_mean")
            bias = 100.0 * (dm - rm) / abs(rm) if rm and dm is not None else None
            bias_ref = "raw mean"
        rows[ch] = {"truth": truth.get(ch), "estimated": est, "gain_db": gain, "bias_pct": bias,
                    "bias_reference": bias_ref, "worse": gain is not None and gain <= 0,
                    "statistics": stats[ch], "diagnostic_noise": noise[ch]}
    links = _figures(raw, denoised, truth_dir, channels, rows, figures_dir) if figures_dir is not None else {}
    for ch, link in links.items():
        rows[ch]["figure"] = link
    return {"raw_plate": str(raw), "denoised_plate": str(denoised),
            "truth": str(truth_dir) if truth_dir is not None else None,
            "quality_json": str(Path(run_dir) / "quality.json") if estimated else None,
            "phase_split": int(quality.get("phase_split", 1)),
            "data_range_rule": "per field, the truth's p99.9 - p0.1", "diagnostic_noise_label": NOISE_LABEL,
            "channels": rows}


def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "-"
    return format(v, spec) if isinstance(v, float) else str(v)


def _estimate_cell(est: dict | None) -> str:
    if not est:
        return "-"
    doubt = "" if est.get("reliable", True) else " (unreliable noise fit)"
    if est.get("lower_bound"):
        return f">= {est['gain_db']:.1f}{doubt}"
    high = est.get("gain_db_high")
    spread = f" [{est['gain_db_low']:.1f}, {high:.1f}]" if high is not None else ""
    return f"{est['gain_db']:+.1f}{spread}{doubt}"


def render_markdown(report: dict, extra: dict | None = None) -> str:
    """The report as Markdown: quality table, diagnostics, figures."""
    lines = ["# jumpdenoise report", "", f"- raw plate: `{report['raw_plate']}`",
             f"- denoised plate: `{report['denoised_plate']}`",
             f"- ground truth: `{report['truth']}`" if report["truth"] else "- ground truth: none",
             f"- estimated gain: `{report['quality_json']}`" if report["quality_json"] else
             "- estimated gain: none (no quality.json in the model's run folder)"]
    if report.get("phase_split", 1) > 1:
        split = report["phase_split"]
        lines.append(f"- trained and predicted on {split}x{split} phase sub-images: the raw noise is correlated between "
                     "neighbouring pixels (`noise_correlation.json` of the run folder)")
    for k, v in (extra or {}).items():
        lines.append(f"- {k}: `{v}`")
    head = ["channel", "PSNR raw (dB)", "PSNR denoised (dB)", "gain vs truth (dB)", "SSIM raw", "SSIM denoised",
            "estimated gain (dB)", "mean bias (%)", "verdict", "figure"]
    lines += ["", "## Quality", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for ch, row in report["channels"].items():
        t = row["truth"] or {}
        verdict = "**WORSE than raw**" if row["worse"] else ("better" if row["gain_db"] is not None else "unknown")
        figure = f"[{ch}]({row['figure']})" if row.get("figure") else "-"
        cells = [ch, _fmt(t.get("raw", {}).get("psnr"), ".2f"), _fmt(t.get("denoised", {}).get("psnr"), ".2f"),
                 _fmt(t.get("gain_db"), "+.2f"), _fmt(t.get("raw", {}).get("ssim"), ".3f"),
                 _fmt(t.get("denoised", {}).get("ssim"), ".3f"), _estimate_cell(row["estimated"]),
                 f"{_fmt(row['bias_pct'], '+.2f')} (vs {row['bias_reference']})", verdict, figure]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "PSNR/SSIM: means over the scored fields; data range of a field: "
              f"{report['data_range_rule']}. Estimated gain: of what predict writes (the network's output blended "
              "with the raw image per band, weights chosen by Stein's unbiased risk estimate), measured on "
              "held-out fields, with its +-2 standard-error range; 'unreliable': the noise, fitted "
              "from the images, looks spatially correlated or mixed with fine structure. WORSE: gain <= 0 dB (the "
              "truth's when known, else a reliable estimate)."]
    lines += ["", "## Diagnostics", "", f"noise: {report['diagnostic_noise_label']}.", "",
              "| channel | raw mean | denoised mean | raw std | denoised std | raw noise | denoised noise "
              "| output offset removed | blend weights low/high | network alone, est. gain (dB) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for ch, row in report["channels"].items():
        s, n, est = row["statistics"], row["diagnostic_noise"], row["estimated"] or {}
        lines.append("| " + " | ".join([ch, _fmt(s.get("raw_mean")), _fmt(s.get("denoised_mean")),
                                           _fmt(s.get("raw_std")), _fmt(s.get("denoised_std")),
                                           _fmt(n.get("raw")), _fmt(n.get("denoised")),
                                           _fmt(est.get("output_offset"), "+.3g"),
                                           "/".join(f"{w:.2f}" for w in est["blend"]) if est.get("blend") else "-",
                                           _fmt(est.get("network_gain_db"), "+.1f")]) + " |")
    figures = [(ch, row["figure"]) for ch, row in report["channels"].items() if row.get("figure")]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{ch}]({link})" for ch, link in figures]
    return "\n".join(lines) + "\n"


def run_one(config: Any, unit: Unit, session: PlateSession) -> dict:
    """Write ``report.md``, ``report.json`` and ``report_figures/`` into the workdir; return their paths."""
    from jumpdenoise.quality.truth import find_truth_dir

    raw, den = _plates(config)
    out = Path(config.paths.workdir)
    out.mkdir(parents=True, exist_ok=True)
    truth_dir = find_truth_dir(raw, getattr(config.predict, "truth", None))
    run_dir = _run_folder(config, den)
    report = build_report(raw, den, truth_dir=truth_dir, run_dir=run_dir, figures_dir=out)
    extra = {}
    if run_dir is not None:
        for name in ("checkpoints/last.ckpt", "curves.png", "curves.csv"):
            if (run_dir / name).exists():
                extra[name] = str(run_dir / name)
    report["model"] = extra
    (out / "report.json").write_text(json.dumps(report, indent=1, default=_json_default))
    (out / "report.md").write_text(render_markdown(report, extra))
    return {"markdown": str(out / "report.md"), "json": str(out / "report.json")}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def finalize(config: Any, results: list, session: PlateSession) -> dict:
    """Nothing to merge; returns the paths of the report."""
    out = Path(config.paths.workdir)
    return {"markdown": str(out / "report.md"), "json": str(out / "report.json")}
