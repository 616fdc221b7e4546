"""The stats stage and the `info` / `stats` CLI commands on real zarr plates."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from jumpdenoise.stages.session import PlateSession
from jumpdenoise.cli import app
from jumpdenoise.compute.stats import field_partial, merge_partials
from jumpdenoise.config import ConvertConfig, JumpDenoiseConfig
from jumpdenoise.errors import PlateError
from jumpdenoise.io import ngff
from jumpdenoise.io.layout import Channel, FieldLayout, PlaneRef, PlateLayout, WellLayout
from jumpdenoise.stages import stats as stats_stage

CHANNELS = ["DNA", "RNA"]
WELLS = ["B02", "B03", "D10"]


def make_layout():
    return PlateLayout(
        name="STATSPLATE", source_kind="load_data", source_path="/dummy/load_data.csv", n_rows=16, n_columns=24,
        channels=[Channel(name=c, source_id=c) for c in CHANNELS],
        wells=[WellLayout(row=w[0], column=int(w[1:]), fields=[
            FieldLayout(index=f, site=f + 1, planes={c: PlaneRef(path=f"/dummy/{w}{f}{c}.tif") for c in CHANNELS})
            for f in range(3)]) for w in WELLS],
        shape=(32, 30), dtype="uint16", pixel_size_um=0.65,
    )


def pixels(well, field):
    rng = np.random.default_rng([ord(well[0]), int(well[1:]), field])
    return rng.poisson([[[150]], [[900]]], size=(2, 32, 30)).astype(np.uint16)


@pytest.fixture
def plate(tmp_path):
    path = tmp_path / "raw.zarr"
    ngff.create_plate(path, make_layout(), ConvertConfig(codec="lz4", clevel=5))
    for w in WELLS:
        for f in range(3):
            ngff.write_field(path, w, f, pixels(w, f))
    return path


def expected_statistics():
    partials = {ngff.field_key(w, f): field_partial(pixels(w, f), CHANNELS) for w in WELLS for f in range(3)}
    return merge_partials(partials, CHANNELS)


def test_recomputation_equals_statistics_from_partials(plate):
    stats = stats_stage.compute_statistics(plate)
    expected = expected_statistics()
    assert set(stats["wells"]) == set(WELLS)
    for scope_got, scope_exp in [(stats["plate"], expected["plate"])] + [
            (stats["wells"][w], expected["wells"][w]) for w in WELLS]:
        for ch in CHANNELS:
            assert scope_got[ch] == pytest.approx(scope_exp[ch], rel=1e-12)
    everything = np.stack([pixels(w, f)[1] for w in WELLS for f in range(3)])
    assert stats["plate"]["RNA"]["p99.9"] == pytest.approx(np.percentile(everything, 99.9), rel=1e-12)
    stored = ngff.plate_info(plate).statistics
    assert stored["plate"]["DNA"] == pytest.approx(stats["plate"]["DNA"])
    assert ngff.done_keys(plate, stats_stage.NAMESPACE) == set()  # markers removed after finalize


def test_stage_resumes_and_accepts_full_config(plate):
    config = JumpDenoiseConfig.model_validate({"paths": {"workdir": str(plate.parent), "raw_plate": str(plate)}})
    units = stats_stage.plan(config)
    assert [u.key for u in units] == WELLS and units[0].items == ["B02/0", "B02/1", "B02/2"]
    stats_stage.run_one(config, units[0], PlateSession())
    assert [u.key for u in stats_stage.plan(config)] == WELLS[1:]
    with pytest.raises(PlateError, match="B03, D10"):
        stats_stage.finalize(config, [], PlateSession())
    for unit in stats_stage.plan(config):
        stats_stage.run_one(config, unit, PlateSession())
    stats = stats_stage.finalize(config, [], PlateSession())
    assert stats["plate"]["DNA"]["count"] == 9 * 32 * 30
    # the pipeline's stats stage keeps statistics already stored (e.g. by convert) ...
    assert stats_stage.plan(config) == []
    assert stats_stage.finalize(config, [], PlateSession())["plate"]["RNA"] == pytest.approx(stats["plate"]["RNA"])
    # ... while a StatsRequest recomputes them
    assert len(stats_stage.plan(stats_stage.StatsRequest(plate=plate))) == 3


def test_float_plate_statistics(plate, tmp_path):
    dst = tmp_path / "denoised.zarr"
    ngff.create_plate_like(plate, dst, dtype="float32")
    values = {}
    for w in WELLS:
        for f in range(3):
            values[(w, f)] = pixels(w, f).astype(np.float32) / 7.0
            ngff.write_field(dst, w, f, values[(w, f)])
    stats = stats_stage.compute_statistics(dst)
    dna = np.stack([v[0] for v in values.values()]).astype(np.float64)
    assert stats["histogram"] == "float" and stats["dtype"] == "float32"
    assert stats["plate"]["DNA"]["mean"] == pytest.approx(dna.mean(), rel=1e-9)
    assert stats["plate"]["DNA"]["p50"] == pytest.approx(np.percentile(dna, 50), rel=2**-8)
    window = json.loads((dst / "D/10/2/zarr.json").read_text())["attributes"]["ome"]["omero"]["channels"][0]["window"]
    assert dna.min() <= window["start"] < window["end"] <= dna.max()
    assert (window["min"], window["max"]) == pytest.approx((dna.min(), dna.max()), rel=1e-6)


def test_stats_of_a_missing_plate_names_it(tmp_path):
    with pytest.raises(PlateError, match="nope.zarr"):
        stats_stage.compute_statistics(tmp_path / "nope.zarr")


def test_cli_stats_and_info(plate, tmp_path):
    runner = CliRunner()
    out_csv = tmp_path / "stats.csv"
    result = runner.invoke(app, ["stats", str(plate), "--csv", str(out_csv)])
    assert result.exit_code == 0, result.output
    assert "DNA" in result.output and "RNA" in result.output
    with open(out_csv) as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["scope"], r["well"]) for r in rows} == {("plate", "")} | {("well", w) for w in WELLS}
    expected = expected_statistics()
    dna = next(r for r in rows if r["scope"] == "plate" and r["channel"] == "DNA")
    assert float(dna["p99"]) == pytest.approx(expected["plate"]["DNA"]["p99"], rel=1e-12)
    assert (plate / ".jumpdenoise" / "statistics.csv").read_text() == out_csv.read_text()

    result = runner.invoke(app, ["info", str(plate)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ["STATSPLATE", "wells: 3", "fields: 9", "DNA, RNA", "(2, 32, 30)", "uint16", "0.65", "blosc lz4 clevel 5", "plate statistics"]:
        assert text in result.output, text
    bad = runner.invoke(app, ["info", str(tmp_path / "nothing.zarr")])
    assert bad.exit_code != 0 and "nothing.zarr" in str(bad.exception)
