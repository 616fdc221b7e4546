"""How the predict stage's units run: writer processes, units streamed through one pipeline
(and failing alone), finalize from the written payloads, the resume of a killed write, and
``run_one`` depending on its session and configuration only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.predictions import predicted_plate

from jumpdenoise.io.ngff import plate_info, read_field
from jumpdenoise.stages.predict import predict


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return predicted_plate(tmp_path_factory.mktemp("predict"))


def test_writer_processes_write_the_same_plate_as_threads(setup: dict) -> None:
    """write_processes=2 (shared memory, spawned writers) stores the same bytes as writer threads."""
    out = predict(model=setup["run"], plate=setup["plate"], out=setup["root"] / "processes.zarr", write_processes=2)
    files = {}
    for plate in (setup["out"], out):
        files[plate] = {p.relative_to(plate).as_posix(): p.read_bytes() for p in sorted(plate.rglob("*"))
                        if p.is_file() and "/c/" in p.as_posix()}  # every chunk of every level
    assert len(files[out]) >= 4 * 2 and files[out] == files[setup["out"]]
    raw_done, proc_done = (np.load(p / ".jumpdenoise" / "done" / "B02-1.npz") for p in (setup["out"], out))
    assert raw_done.files == proc_done.files
    assert all(np.array_equal(raw_done[k], proc_done[k]) for k in raw_done.files)
    assert plate_info(out).attrs["comparison"] == plate_info(setup["out"]).attrs["comparison"]


def test_units_stream_through_one_pipeline_and_fail_alone(setup: dict, tmp_path: Path, monkeypatch) -> None:
    """run_many: per-unit outcomes in order, the same bytes as one unit at a time; a field
    that cannot be read fails its unit only; a failure of the computation itself fails the
    unit in flight and the next units run in a new pipeline."""
    from jumpdenoise.config import JumpDenoiseConfig
    from jumpdenoise.executors.local import LocalExecutor
    from jumpdenoise.stages import predict as stage
    from jumpdenoise.stages.base import bind
    from jumpdenoise.stages.session import PlateSession

    def config(out: Path, plate: Path) -> JumpDenoiseConfig:
        data = JumpDenoiseConfig().model_dump()
        data["paths"].update(raw_plate=str(plate), denoised_plate=str(out))
        data["predict"].update(model=str(setup["run"]))
        data["predict"]["experimental"].update(wells_per_unit=1)
        return JumpDenoiseConfig.model_validate(data)

    session = PlateSession()

    def chunks(plate: Path) -> dict:
        return {p.relative_to(plate).as_posix(): p.read_bytes() for p in sorted(plate.rglob("*"))
                if p.is_file() and "/c/" in p.as_posix()}

    cfg = config(tmp_path / "streamed.zarr", setup["plate"])
    stage.prepare(cfg, session)
    units = stage.plan(cfg)
    assert [u.key for u in units] == ["wells-A01", "wells-B02"]
    outcomes = LocalExecutor(1).map(bind(stage.MODULE, cfg, session), units)
    assert [(o.key, o.ok, o.value["fields"]) for o in outcomes] == [
        ("wells-A01", True, ["A01-0", "A01-1"]), ("wells-B02", True, ["B02-0", "B02-1"])]
    stage.finalize(cfg, outcomes, session)
    assert chunks(tmp_path / "streamed.zarr") == chunks(setup["out"])
    assert plate_info(tmp_path / "streamed.zarr").attrs["comparison"] == plate_info(setup["out"]).attrs["comparison"]

    # a corrupt chunk in A01's field 1: that unit fails and names the field; B02 is done
    broken = tmp_path / "broken.zarr"
    shutil.copytree(setup["plate"], broken)
    chunk = next(p for p in sorted((broken / "A" / "1" / "1" / "0").rglob("*")) if p.is_file() and "/c/" in p.as_posix())
    chunk.write_bytes(b"not a blosc chunk")
    cfg = config(tmp_path / "from_broken.zarr", broken)
    stage.prepare(cfg, session)
    seen: list = []
    stage.run_many(cfg, stage.plan(cfg), lambda u, r, e: seen.append((u.key, r, e)), session)
    assert [k for k, _, _ in seen] == ["wells-A01", "wells-B02"]
    assert seen[0][1] is None and "A01-1 (read)" in str(seen[0][2])
    assert seen[1][2] is None and seen[1][1]["fields"] == ["B02-0", "B02-1"]

    # the network fails on the second field: wells-A01 fails, wells-B02 runs in a new pipeline
    from jumpdenoise.predict.engine import Predictor

    calls = {"n": 0}
    real = Predictor.predict_normalized

    def flaky(self, x):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, x)

    monkeypatch.setattr(Predictor, "predict_normalized", flaky)
    cfg = config(tmp_path / "flaky.zarr", setup["plate"])
    stage.prepare(cfg, session)
    seen.clear()
    stage.run_many(cfg, stage.plan(cfg), lambda u, r, e: seen.append((u.key, r, e)), session)
    assert [k for k, _, _ in seen] == ["wells-A01", "wells-B02"]
    assert "out of memory (simulated)" in str(seen[0][2]) and seen[1][1]["fields"] == ["B02-0", "B02-1"]
    assert [u.key for u in stage.plan(cfg)] == ["wells-A01"]  # a rerun redoes what is missing
    session.close()


def test_finalize_uses_the_written_payloads_and_equals_reading_the_markers(setup: dict, tmp_path: Path,
                                                                          monkeypatch) -> None:
    """In the process that wrote the fields, finalize takes their marker payloads from the
    units' results (no marker read); finalizing again from the markers gives the same bytes."""
    from jumpdenoise.config import JumpDenoiseConfig
    from jumpdenoise.stages import predict as stage
    from jumpdenoise.stages.session import PlateSession

    out = tmp_path / "cached.zarr"
    with monkeypatch.context() as m:
        m.setattr(stage, "_load_marker", lambda *a: (_ for _ in ()).throw(AssertionError("marker read")))
        predict(model=setup["run"], plate=setup["plate"], out=out, wells_per_unit=1)

    def files() -> dict:
        return {n: (out / n).read_bytes() for n in ("zarr.json", ".jumpdenoise/statistics.csv",
                                                    ".jumpdenoise/comparison.csv", "A/1/0/zarr.json")}

    before = files()
    data = JumpDenoiseConfig().model_dump()
    data["paths"].update(raw_plate=str(setup["plate"]), denoised_plate=str(out))
    data["predict"].update(model=str(setup["run"]))
    reads: list = []
    real = stage._load_marker
    monkeypatch.setattr(stage, "_load_marker", lambda o, k: reads.append(k) or real(o, k))
    with PlateSession() as session:
        stage.finalize(JumpDenoiseConfig.model_validate(data), [], session)
    assert sorted(reads) == ["A01-0", "A01-1", "B02-0", "B02-1"]  # nothing left in memory: markers read
    assert files() == before
    assert plate_info(out).attrs["statistics"] == plate_info(setup["out"]).attrs["statistics"]


def test_resume_removes_the_temporary_chunks_of_a_killed_write(setup: dict, tmp_path: Path) -> None:
    """A run killed while writing a field leaves ``*.partial`` chunk files: the run redoing
    the field removes them, and the plate is the same as an uninterrupted one."""
    out = tmp_path / "killed.zarr"
    shutil.copytree(setup["out"], out)
    chunk = out / "B" / "2" / "1" / "0" / "c" / "0" / "0" / "0"
    partial = chunk.with_name("0.0123456789abcdef.partial")
    partial.write_bytes(chunk.read_bytes()[:10])
    (out / ".jumpdenoise" / "done" / "B02-1.npz").unlink()
    predict(model=setup["run"], plate=setup["plate"], out=out)
    assert not list(out.rglob("*.partial"))
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if "/c/" in p.as_posix()
             and p.is_file()}
    want = {p.relative_to(setup["out"]).as_posix(): p.read_bytes() for p in sorted(setup["out"].rglob("*"))
            if "/c/" in p.as_posix() and p.is_file()}
    assert files == want


def test_run_one_depends_on_its_session_and_config_only(setup: dict, tmp_path: Path) -> None:
    """A unit run after another configuration ran in the process gives the same bytes as in a
    fresh process: the predictor lives in the session, keyed by the whole ``predict``
    configuration and the model's digest (a changed normalisation file makes a new one)."""
    from jumpdenoise.config import JumpDenoiseConfig
    from jumpdenoise.stages import predict as stage
    from jumpdenoise.stages.predict_setup import get_predictor
    from jumpdenoise.stages.session import PlateSession

    def config(out: Path, **predict_settings) -> JumpDenoiseConfig:
        data = JumpDenoiseConfig().model_dump()
        data["paths"].update(raw_plate=str(setup["plate"]), denoised_plate=str(out))
        data["predict"].update({"model": str(setup["run"]), "wells": ["B02"], **predict_settings})
        return JumpDenoiseConfig.model_validate(data)

    def run(cfg: JumpDenoiseConfig, session: PlateSession) -> dict:
        stage.prepare(cfg, session)
        (unit,) = stage.plan(cfg)
        result = stage.run_one(cfg, unit, session)
        assert result["fields"] == ["B02-0", "B02-1"] and set(result["payloads"]) == {"B02-0", "B02-1"}
        return {f: read_field(cfg.paths.denoised_plate, "B02", f) for f in (0, 1)}

    with PlateSession() as first:
        blended = run(config(tmp_path / "blend.zarr", tile_size=80, blending="blend"), first)
    with PlateSession() as second:
        whole = run(config(tmp_path / "whole.zarr"), second)
    assert all(np.array_equal(whole[f], read_field(setup["out"], "B02", f)) for f in (0, 1))
    assert not all(np.array_equal(whole[f], blended[f]) for f in (0, 1))

    model = setup["root"] / "run-copy"
    shutil.copytree(setup["run"], model)
    with PlateSession() as session:
        cfg = config(tmp_path / "unused.zarr", model=str(model), device="cpu")
        a = get_predictor(cfg, session)
        assert get_predictor(cfg, session) is a
        with_tta = config(tmp_path / "unused.zarr", model=str(model), device="cpu", tta=True)
        assert get_predictor(with_tta, session) is not a
        norm = model / "normalization.json"
        values = json.loads(norm.read_text())
        values["std"] = [2 * s for s in values["std"]]
        norm.write_text(json.dumps(values))
        b = get_predictor(cfg, session)
        assert b is not a and np.allclose(b.model.std, 2 * np.asarray(a.model.std))
        import torch

        if not torch.cuda.is_available():  # "auto" is the CPU here: prepare's CPU copy serves the units
            assert get_predictor(config(tmp_path / "unused.zarr", model=str(model)), session) is b
