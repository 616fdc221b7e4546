"""Damaged raw plates and models are refused with one clear line, never guessed (issue 14).

A real small plate (1 x 2 wells, 2 fields, 64 x 64, generated in the Phenix layout and
converted by ``jumpdenoise convert``) and a tiny trained model; each case damages a copy of
one of them and runs ``predict`` or ``verify`` (the CLI in this process) or reads the plate,
asserting the exit code, the error line and that no damaged field of the output is marked
complete. Missing or damaged conversion sources are in ``test_refuse_bad_sources.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.refusals import converted_plate_and_run, copy_of, error_line, run_cli

from jumpdenoise.io.ngff import done_keys, plate_info, read_field


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return converted_plate_and_run(tmp_path_factory.mktemp("refuse"))


def chunk_file(plate: Path, well_path: str, field: int, channel: int) -> Path:
    return plate / well_path / str(field) / "0" / "c" / str(channel) / "0" / "0"


def predict_args(run: Path, raw: Path, out: Path, *extra: str) -> list:
    return ["predict", run, raw, out, "--device", "cpu", *extra]


# ----------------------------------------------------------------------------- predict: missing fields


def test_predict_refuses_a_field_never_converted_and_skip_missing_leaves_it_out(base, tmp_path, capsys) -> None:
    raw = copy_of(base, tmp_path, "raw")
    (raw / ".jumpdenoise" / "done" / "A01-1.npz").unlink()  # its conversion failed: no marker
    out = tmp_path / "den.zarr"
    code, text = run_cli(capsys, *predict_args(base["run"], raw, out))
    line = error_line(text)
    assert code == 2 and "A01/1" in line and "not marked complete" in line and "--skip-missing" in line
    assert not out.exists()  # refused before anything is written
    code, text = run_cli(capsys, *predict_args(base["run"], raw, out, "--skip-missing"))
    assert code == 0, text
    assert done_keys(out) == {"A01-0", "A02-0", "A02-1"}
    assert not read_field(out, "A01", 1).any()  # left empty, not denoised from zeros


# ----------------------------------------------------------------------------- predict: damaged chunks


def test_predict_refuses_a_deleted_chunk_naming_well_field_channel(base, tmp_path, capsys) -> None:
    raw = copy_of(base, tmp_path, "raw")
    chunk_file(raw, "A/2", 1, 1).unlink()
    out = tmp_path / "den.zarr"
    code, text = run_cli(capsys, *predict_args(base["run"], raw, out))
    assert code == 2, text
    assert "field A02/1, channel(s) 'ER': chunk file missing" in text and "Traceback" not in text
    assert "A02-1" not in done_keys(out)


def test_predict_refuses_a_chunk_with_flipped_bytes(base, tmp_path, capsys) -> None:
    raw = copy_of(base, tmp_path, "raw")
    path = chunk_file(raw, "A/1", 0, 0)
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0x10  # still decodes: only the checksum tells
    path.write_bytes(bytes(payload))
    out = tmp_path / "den.zarr"
    code, text = run_cli(capsys, *predict_args(base["run"], raw, out))
    assert code == 2 and "Traceback" not in text, text
    assert "field A01/0, channel(s) 'DNA': chunk checksum (crc32c) does not match" in text
    assert "A01-0" not in done_keys(out) and len(done_keys(out)) == 3


def test_predict_on_a_damaged_blosc_header_is_one_line_naming_the_field(base, tmp_path, capsys) -> None:
    from jumpdenoise.io.ngff_chunks import crc32c

    raw = copy_of(base, tmp_path, "raw")
    path = chunk_file(raw, "A/2", 0, 1)
    body = bytearray(path.read_bytes()[:-4])
    body[:16] = b"\xff" * 16  # damaged before its checksum was computed: the decoder must catch it
    path.write_bytes(bytes(body) + crc32c(bytes(body)))
    out = tmp_path / "den.zarr"
    code, text = run_cli(capsys, *predict_args(base["run"], raw, out))
    assert code == 2 and "Traceback" not in text, text
    assert "field A02/0, channel(s) 'ER': chunk cannot be decoded" in text
    assert "A02-0" not in done_keys(out)


@pytest.mark.parametrize("document", ["group", "array"])
def test_predict_on_a_truncated_field_zarr_json_is_one_line_naming_it(base, tmp_path, capsys, document) -> None:
    raw = copy_of(base, tmp_path, "raw")
    meta = raw / "A" / "2" / "1" / ("zarr.json" if document == "group" else "0/zarr.json")
    meta.write_bytes(meta.read_bytes()[:40])
    out = tmp_path / "den.zarr"
    code, text = run_cli(capsys, *predict_args(base["run"], raw, out))
    assert code == 2 and "Traceback" not in text, text
    assert str(meta.parent) in text
    assert not out.exists() or "A02-1" not in done_keys(out)


def test_old_plate_without_checksums_reads_unverified_said_once(base, tmp_path, caplog) -> None:
    """A plate written before chunk checksums existed: same pixels, one warning."""
    raw = copy_of(base, tmp_path, "raw")
    expected = {(w, f): read_field(base["raw"], w, f) for w, f in plate_info(raw).field_keys()}
    for meta in raw.glob("*/*/*/0/zarr.json"):  # drop the crc32c codec and each chunk's 4 bytes
        doc = json.loads(meta.read_text())
        doc["codecs"] = [c for c in doc["codecs"] if c["name"] != "crc32c"]
        meta.write_text(json.dumps(doc))
        for chunk in (meta.parent / "c").rglob("*"):
            if chunk.is_file():
                chunk.write_bytes(chunk.read_bytes()[:-4])
    with caplog.at_level("WARNING", logger="jumpdenoise"):
        for (w, f), data in expected.items():
            assert np.array_equal(read_field(raw, w, f), data)
    assert [r.getMessage() for r in caplog.records].count(
        f"{raw.resolve()}: written without chunk checksums (an older plate): its chunks are read unverified") == 1


def test_verify_reports_a_chunk_with_flipped_bytes(base, tmp_path, capsys) -> None:
    raw = copy_of(base, tmp_path, "raw")
    path = chunk_file(raw, "A/1", 1, 1)
    payload = bytearray(path.read_bytes())
    payload[-10] ^= 0x01
    path.write_bytes(bytes(payload))
    code, text = run_cli(capsys, "verify", base["images"], raw)
    assert code == 1 and "A01-1: cannot read from the plate" in text and "checksum" in text


# ----------------------------------------------------------------------------- predict: damaged models


def flip_middle(path: Path, n: int = 16) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + n] = bytes(b ^ 0xFF for b in data[middle:middle + n])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["run", "bare"])
def test_predict_refuses_a_checkpoint_with_flipped_bytes(base, tmp_path, capsys, kind) -> None:
    run = copy_of(base, tmp_path, "run")
    ckpt = run / "checkpoints" / "last.ckpt"
    if kind == "bare":
        ckpt = Path(shutil.copyfile(ckpt, tmp_path / "model.ckpt"))
    flip_middle(ckpt)
    out = tmp_path / "den.zarr"
    code, text = run_cli(capsys, *predict_args(run if kind == "run" else ckpt, base["raw"], out))
    line = error_line(text)
    assert code == 2 and str(ckpt) in line and "damaged checkpoint" in line and "CRC-32" in line
    assert not out.exists()


def test_checkpoint_digest_file_is_checked(base, tmp_path) -> None:
    from jumpdenoise.errors import ModelError
    from jumpdenoise.predict.model import load_model
    from jumpdenoise.train.run_folder import write_checkpoint_digest

    run = copy_of(base, tmp_path, "run")
    ckpt = run / "checkpoints" / "last.ckpt"
    digest = write_checkpoint_digest(ckpt)
    assert digest.read_text().split() == [digest.read_text().split()[0], "last.ckpt"]
    load_model(run)  # matches
    digest.write_text("0" * 64 + "  last.ckpt\n")
    with pytest.raises(ModelError, match=r"last\.ckpt: damaged checkpoint: its SHA-256 does not match"):
        load_model(run)


def test_bmz_zip_with_flipped_bytes_is_refused_before_loading(tmp_path) -> None:
    import zipfile

    from jumpdenoise.errors import ModelError
    from jumpdenoise.predict.model import load_model

    zpath = tmp_path / "model.zip"
    with zipfile.ZipFile(zpath, "w") as zf:  # stored members, as a weights file is
        zf.writestr("rdf.yaml", "type: model\n")
        zf.writestr("weights.pt", np.random.default_rng(0).bytes(4096))
    flip_middle(zpath, 4)
    with pytest.raises(ModelError, match=r"model\.zip: damaged checkpoint: weights\.pt fails its CRC-32"):
        load_model(zpath)


def test_implausible_output_of_the_first_field_is_refused_naming_the_channel(base, tmp_path, capsys) -> None:
    run = copy_of(base, tmp_path, "run")
    norm = json.loads((run / "normalization.json").read_text())
    norm["mean"][1] *= 1000  # the model's normalisation does not fit this plate's ER channel
    (run / "normalization.json").write_text(json.dumps(norm))
    out = tmp_path / "den.zarr"
    code, text = run_cli(capsys, *predict_args(run, base["raw"], out))
    assert code == 2 and "Traceback" not in text, text
    assert "channel 'ER': the denoised mean" in text and "far outside the raw field's range" in text
    assert done_keys(out) == set()


# ----------------------------------------------------------------------------- reading and verifying plates


def test_sharded_plate_read_through_zarr_refuses_a_damaged_or_missing_shard(base, tmp_path) -> None:
    from jumpdenoise.config import load_config
    from jumpdenoise.errors import PlateError
    from jumpdenoise.io.ngff_chunks import ChunkError
    from jumpdenoise.stages.convert import convert

    raw = tmp_path / "sharded.zarr"
    convert(load_config(overrides={"source": {"path": str(base["images"])}, "paths": {"raw_plate": str(raw)},
                                   "convert": {"shard": True, "chunk_yx": 32},
                                   "executor": {"kind": "local", "workers": 1}}))
    assert np.array_equal(read_field(raw, "A02", 1), read_field(base["raw"], "A02", 1))
    shard = raw / "A" / "2" / "1" / "0" / "c" / "0" / "0" / "0"
    payload = bytearray(shard.read_bytes())
    payload[100] ^= 0x01
    shard.write_bytes(bytes(payload))
    with pytest.raises(PlateError, match=r"field A02/1, channel 'DNA': damaged chunk \(ValueError: Stored and computed "
                                         r"checksum do not match"):
        read_field(raw, "A02", 1)
    shard.unlink()
    with pytest.raises(ChunkError, match=r"field A02/1, channel\(s\) 'DNA', 'ER': chunk file missing"):
        read_field(raw, "A02", 1)


def test_verify_reports_a_field_not_marked_complete(base, tmp_path, capsys) -> None:
    raw = copy_of(base, tmp_path, "raw")
    (raw / ".jumpdenoise" / "done" / "A02-0.npz").unlink()
    code, text = run_cli(capsys, "verify", base["images"], raw)
    assert code == 1 and "A02-0: not converted (the plate has no completion marker for it)" in text


def test_a_field_written_keeps_chunks_of_only_the_fill_value(base, tmp_path) -> None:
    """Every chunk of a written field exists, so that a missing one can only be damage."""
    from jumpdenoise.io.ngff import write_field

    raw = copy_of(base, tmp_path, "raw")
    data = read_field(raw, "A01", 0)
    data[1] = 0  # a channel of only the fill value
    write_field(raw, "A01", 0, data)
    assert chunk_file(raw, "A/1", 0, 1).is_file()
    assert np.array_equal(read_field(raw, "A01", 0), data)


def test_a_raw_field_whose_marker_goes_after_prepare_is_not_denoised(base, tmp_path) -> None:
    """Units may run long after prepare (SLURM): each field's raw marker is checked again."""
    from jumpdenoise.config import load_config
    from jumpdenoise.errors import JumpDenoiseError
    from jumpdenoise.stages.predict import plan, prepare, run_one
    from jumpdenoise.stages.session import PlateSession

    raw = copy_of(base, tmp_path, "raw")
    out = tmp_path / "den.zarr"
    cfg = load_config(overrides={"paths": {"raw_plate": str(raw), "denoised_plate": str(out)},
                                 "predict": {"model": str(base["run"]), "device": "cpu"}})
    session = PlateSession()
    prepare(cfg, session)
    (raw / ".jumpdenoise" / "done" / "A02-1.npz").unlink()  # e.g. being converted again
    (unit,) = plan(cfg)
    with pytest.raises(JumpDenoiseError, match=r"A02-1 \(read\): PlateError: .*field A02/1 is not marked complete"):
        run_one(cfg, unit, session)
    session.close()
    assert done_keys(out) == {"A01-0", "A01-1", "A02-0"}
