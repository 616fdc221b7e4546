"""Predict stage on real zarr plates: layout, provenance, statistics, comparison, equality
with the array path and with CAREamist.predict, tiling, bad inputs, export-tiff, other model
formats. How the stage's units run (writer processes, streaming, finalize, resume, sessions)
is in ``test_predict_units.py``."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.plates import make_plate
from fixtures.predictions import predicted_plate

from jumpdenoise.errors import (
    ModelError,
    OutputExistsError,
    PlateError,
    UnsafeOutputError,
)
from jumpdenoise.io.ngff import plate_info, read_field, validate_plate
from jumpdenoise.stages.predict import predict


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return predicted_plate(tmp_path_factory.mktemp("predict"))


def test_denoised_plate_layout_provenance_statistics(setup: dict) -> None:
    out, plate = setup["out"], setup["plate"]
    validate_plate(out)
    info, raw = plate_info(out), plate_info(plate)
    assert info.kind == "denoised"
    assert info.channels == ["DNA", "ER"]  # the model's channels, picked by name from the plate
    assert info.wells == raw.wells and info.shape_yx == raw.shape_yx and info.dtype == "float32"
    assert info.pixel_size_um == raw.pixel_size_um
    prov = info.attrs["provenance"]
    assert prov["model"]["normalization"]["mean"] and prov["model"]["careamics_config"]["algorithm_config"]
    assert prov["tiling"]["overlap"] >= 2 * prov["tiling"]["receptive_field"] > 0
    assert len(prov["model_sha256"]) == 64 and prov["jumpdenoise_version"] and prov["date"]
    stats = info.statistics
    assert set(stats["plate"]) == {"DNA", "ER"} and set(stats["wells"]) == {"A01", "B02"}
    den = np.stack([read_field(out, w, f) for w, fs in info.wells.items() for f in fs]).astype(np.float64)
    assert stats["plate"]["DNA"]["mean"] == pytest.approx(den[:, 0].mean(), rel=1e-6)
    assert stats["plate"]["ER"]["std"] == pytest.approx(den[:, 1].std(), rel=1e-4)
    with open(out / ".jumpdenoise" / "comparison.csv") as fh:
        rows = list(csv.DictReader(fh))
    plate_rows = {r["channel"]: r for r in rows if r["scope"] == "plate"}
    assert set(plate_rows) == {"DNA", "ER"} and len(rows) == 2 * 3
    rawf = np.stack([read_field(plate, w, f) for w, fs in info.wells.items() for f in fs]).astype(np.float64)
    assert float(plate_rows["DNA"]["raw_mean"]) == pytest.approx(rawf[:, 0].mean(), rel=1e-5)
    assert float(plate_rows["DNA"]["denoised_noise"]) < float(plate_rows["DNA"]["raw_noise"])
    assert info.attrs["comparison"]["plate"]["ER"]["n_fields"] == 4


def test_plate_equals_array_path_bit_for_bit(setup: dict) -> None:
    """The same field predicted by the stage and by denoise_array (another 'job') is identical."""
    from jumpdenoise.predict.arrays import denoise_array

    raw = read_field(setup["plate"], "B02", 1, channels=["DNA", "ER"])
    expected = denoise_array(setup["run"], raw, tile_size=None)
    assert np.array_equal(read_field(setup["out"], "B02", 1), expected)


def test_matches_careamist_predict(setup: dict) -> None:
    from careamics import CAREamist

    from jumpdenoise.predict.arrays import denoise_array

    raw = read_field(setup["plate"], "A01", 0, channels=["DNA", "ER"])[:, :88, :96].astype(np.float32)
    careamist = CAREamist(checkpoint_path=setup["run"] / "checkpoints" / "last.ckpt",
                          work_dir=setup["root"] / "careamist", enable_progress_bar=False)
    theirs, _ = careamist.predict(raw, tile_size=(64, 64), tile_overlap=(56, 56), axes="CYX", batch_size=2)
    ours = denoise_array(setup["run"], raw, tile_size=64, overlap=56)
    scale = np.abs(ours - ours.mean()).max()
    assert np.abs(theirs[0].squeeze() - ours).max() <= 1e-4 * max(scale, 1.0)


def test_tiled_plate_equals_whole_field_plate(setup: dict) -> None:
    out = predict(model=setup["run"], plate=setup["plate"], out=setup["root"] / "tiled.zarr", tile_size=72,
                  blending="blend", wells=["A01"], batch_size=3, dtype="source")
    info = plate_info(out)
    assert info.dtype == "uint16" and list(info.wells) == ["A01"]
    tiled = read_field(out, "A01", 1).astype(np.float64)
    whole = read_field(setup["out"], "A01", 1).astype(np.float64)
    assert np.abs(tiled - np.clip(np.rint(whole), 0, 65535)).max() <= 1.0  # rounding of ~1e-4 differences


def test_rerun_resumes_and_other_output_is_refused(setup: dict, tmp_path: Path) -> None:
    # same model, plate and settings: resumed (nothing to do), same bytes
    before = (setup["out"] / "A" / "1" / "0" / "0" / "c" / "0" / "0" / "0").read_bytes()
    predict(model=setup["run"], plate=setup["plate"], out=setup["out"])
    assert (setup["out"] / "A" / "1" / "0" / "0" / "c" / "0" / "0" / "0").read_bytes() == before
    with pytest.raises(OutputExistsError, match="--overwrite"):
        predict(model=setup["run"], plate=setup["plate"], out=setup["out"], bf16=True)
    taken = tmp_path / "taken.zarr"
    taken.mkdir()
    (taken / "notes.txt").write_text("not a plate")
    with pytest.raises(OutputExistsError, match="already exists"):
        predict(model=setup["run"], plate=setup["plate"], out=taken)
    with pytest.raises(UnsafeOutputError, match="did not write"):  # --overwrite removes only our plates
        predict(model=setup["run"], plate=setup["plate"], out=taken, overwrite=True)
    assert (taken / "notes.txt").read_text() == "not a plate"
    (taken / "notes.txt").unlink()
    predict(model=setup["run"], plate=setup["plate"], out=taken, overwrite=True, wells=["A01"], fields=[0])
    assert plate_info(taken).kind == "denoised"


def test_bad_inputs_give_clear_errors(setup: dict, tmp_path: Path) -> None:
    run, plate = setup["run"], setup["plate"]
    # a plate lacking a channel the model needs
    no_er = make_plate(tmp_path / "no_er.zarr", wells=("A01",), n_fields=1, channels=("DNA", "RNA"), shape_yx=(32, 32))
    with pytest.raises(PlateError, match=r"lacks channel\(s\) \['ER'\]"):
        predict(model=run, plate=no_er, out=tmp_path / "x.zarr")
    # a bare checkpoint (no channel names) on a plate with another channel count
    bare = tmp_path / "bare.ckpt"
    shutil.copyfile(run / "checkpoints" / "last.ckpt", bare)
    with pytest.raises(ModelError, match="2 channel.*3"):
        predict(model=bare, plate=plate, out=tmp_path / "y.zarr")
    # a corrupt checkpoint
    broken = tmp_path / "broken_run"
    shutil.copytree(run, broken)
    data = (broken / "checkpoints" / "last.ckpt").read_bytes()
    (broken / "checkpoints" / "last.ckpt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="corrupt or unreadable checkpoint"):
        predict(model=broken, plate=plate, out=tmp_path / "z.zarr")
    with pytest.raises(ModelError, match="not found"):
        predict(model=tmp_path / "nowhere", plate=plate, out=tmp_path / "w.zarr")
    with pytest.raises(PlateError, match="no well"):
        predict(model=run, plate=plate, out=tmp_path / "v.zarr", wells=["H12"])


def test_cli_predict_and_export_tiff_with_load_data_source(setup: dict, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from jumpdenoise.cli import app
    from jumpdenoise.io.layout import PlateLayout

    out = tmp_path / "cli.zarr"
    res = CliRunner().invoke(app, ["predict", str(setup["run"]), str(setup["plate"]), str(out), "--wells", "B02",
                                   "--fields", "1", "--dtype", "source"])
    assert res.exit_code == 0, res.output
    assert plate_info(out).dtype == "uint16"
    # pretend the raw plate came from a load_data CSV with illumination columns
    src = tmp_path / "src"
    src.mkdir()
    layout_file = out / ".jumpdenoise" / "layout.json"
    layout = PlateLayout.load(layout_file)
    rows = []
    for w in layout.wells:
        for f in w.fields:
            row = {"Metadata_Plate": layout.name, "Metadata_Well": w.id, "Metadata_Site": str(f.site)}
            for ch in ("DNA", "ER", "RNA"):
                name = f"{w.id}_s{f.site}_{ch}.tif"
                row[f"FileName_Orig{ch}"], row[f"PathName_Orig{ch}"] = name, str(src)
                f.planes[ch] = f.planes[ch].model_copy(update={"path": str(src / name)})
            row["FileName_IllumDNA"], row["PathName_IllumDNA"] = "illum_DNA.npy", "/illum"
            rows.append(row)
    with open(src / "load_data_with_illum.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    layout.source_kind = "load_data"
    layout.metadata = {"csv_path": str(src / "load_data_with_illum.csv")}
    layout.save(layout_file)
    export = tmp_path / "tiffs"
    res = CliRunner().invoke(app, ["export-tiff", str(out), str(export)])
    assert res.exit_code == 0, res.output
    import tifffile

    assert sorted(p.name for p in export.glob("*.tif")) == ["B02_s2_DNA.tif", "B02_s2_ER.tif"]
    assert np.array_equal(tifffile.imread(export / "B02_s2_ER.tif"), read_field(out, "B02", 1)[1])
    with open(export / "load_data_with_illum.csv") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == list(rows[0])
        got = list(reader)
    assert len(got) == 1 and got[0]["Metadata_Well"] == "B02" and got[0]["Metadata_Site"] == "2"
    assert got[0]["PathName_OrigDNA"] == str(export.resolve()) and got[0]["FileName_OrigER"] == "B02_s2_ER.tif"
    assert got[0]["PathName_OrigRNA"] == str(src) and got[0]["FileName_IllumDNA"] == "illum_DNA.npy"
    res = CliRunner().invoke(app, ["export-tiff", str(out), str(export)])
    assert res.exit_code != 0 and "already exists" in str(res.exception)


def test_bmz_zip_and_checkpoint_load_like_the_run_folder(setup: dict, tmp_path: Path, monkeypatch) -> None:
    import tempfile

    from careamics import CAREamist

    from jumpdenoise.predict.arrays import denoise_array
    from jumpdenoise.predict.model import load_model

    ckpt = setup["run"] / "checkpoints" / "last.ckpt"
    careamist = CAREamist(checkpoint_path=ckpt, work_dir=setup["root"] / "bmz-work", enable_progress_bar=False)
    example = read_field(setup["plate"], "A01", 0, channels=["DNA", "ER"])[:, :64, :64].astype(np.float32)
    zip_path = setup["root"] / "model.zip"
    careamist.export_to_bmz(path_to_archive=zip_path, friendly_model_name="jumpdenoise test model",
                            input_array=example, authors=[{"name": "jumpdenoise"}],
                            general_description="a tiny N2V test model", data_description="synthetic blobs",
                            channel_names=["DNA", "ER"])
    run_model = load_model(setup["run"])
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    from_zip = load_model(zip_path)
    assert not list(system_tmp.iterdir()), "loading the zip left files in the temporary folder"
    for other, kind in ((from_zip, "bmz"), (load_model(ckpt), "checkpoint")):
        assert other.kind == kind and other.channels == ["DNA", "ER"] and other.stride == run_model.stride
        np.testing.assert_allclose(other.mean, run_model.mean, rtol=1e-6)
        raw = read_field(setup["plate"], "B02", 0, channels=["DNA", "ER"])
        np.testing.assert_allclose(denoise_array(other, raw, tile_size=None), denoise_array(run_model, raw, tile_size=None),
                                   rtol=1e-5, atol=1e-4)


def test_output_bits_do_not_depend_on_torch_threads_set_elsewhere(tmp_path: Path) -> None:
    """Another library changing torch's thread count in-process (Lightning does) changes no bit."""
    import torch
    from fixtures.models import make_run

    from jumpdenoise.predict.arrays import denoise_array
    from jumpdenoise.predict.model import load_model

    model = load_model(make_run(tmp_path / "run", channels=("DNA", "ER"), depth=2, features=8, steps=2))
    image = np.random.default_rng(5).gamma(2.0, 300.0, (2, 96, 96)).astype("uint16")
    saved = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            outs.append(denoise_array(model, image, tile_size=None))
            assert torch.get_num_threads() == threads  # restored after prediction
    finally:
        torch.set_num_threads(saved)
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[1], outs[2])
