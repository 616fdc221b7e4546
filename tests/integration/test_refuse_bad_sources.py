"""Missing or damaged conversion sources are refused with one clear line, never guessed (issue 14).

Image files missing for a whole field, load_data CSVs whose files do not exist (the real
Gallery CSV among them), file names not matching the pattern, a multi-page TIFF in a
one-plane slot, a cut TIFF: ``jumpdenoise convert`` (the CLI in this process) exits with one
error line and marks no such field complete. Damaged plates and models are in
``test_refuse_damaged.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fixtures.refusals import converted_plate_and_run, copy_of, error_line, run_cli

from jumpdenoise.io.ngff import done_keys

JUMP = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "jump"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return converted_plate_and_run(tmp_path_factory.mktemp("refuse"))


def jump_sample(name: str) -> Path:
    """A real JUMP sample of the shared data; skipped when absent, except in CI (fails)."""
    path = JUMP / name
    if not path.exists():
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"shared JUMP sample {path} missing in CI")
        pytest.skip(f"shared JUMP sample {path} not available")
    return path


def test_convert_refuses_a_field_whose_files_are_all_missing_unless_allowed(base, tmp_path, capsys) -> None:
    src = copy_of(base, tmp_path, "images")
    for path in src.glob("r01c02f02p01-ch*"):  # every image of A02, site 2
        path.unlink()
    out = tmp_path / "raw.zarr"
    code, text = run_cli(capsys, "convert", src, out, "--executor", "local")
    line = error_line(text)
    assert code == 2 and "1 source item(s) would not become a field" in line and "convert.allow_missing" in text
    assert "A02 site 2: all 2 image file(s) missing" in text
    assert done_keys(out) == set()
    config = tmp_path / "allow.yaml"
    config.write_text("convert:\n  allow_missing: true\n")
    code, text = run_cli(capsys, "convert", src, out, "--executor", "local", "--config", config)
    assert code == 0, text
    assert done_keys(out) == {"A01-0", "A01-1", "A02-0"}


def test_convert_refuses_a_load_data_csv_whose_files_are_all_missing(base, tmp_path, capsys) -> None:
    rows = [("Metadata_Plate,Metadata_Well,Metadata_Site,Metadata_ImageSizeX,Metadata_ImageSizeY,"
             "FileName_OrigDNA,PathName_OrigDNA")]  # the image size given: once read as an empty plate
    rows += [f"P,A0{c},{s},64,64,r01c0{c}f0{s}p01-ch1sk1fk1fl1.tiff,images" for c in (1, 2) for s in (1, 2)]
    csv_path = tmp_path / "load_data.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    code, text = run_cli(capsys, "convert", csv_path, tmp_path / "raw.zarr", "--executor", "local")
    line = error_line(text)
    assert code == 2 and "no image file of the source exists (4 listed image(s) missing" in line


def test_convert_refuses_the_real_load_data_csv_without_its_path_rewrite(tmp_path, capsys) -> None:
    """The Gallery's CSV lists repository-relative paths: without source.path_rewrite no file exists."""
    csv_path = jump_sample("phenix_v1/load_data_version1.csv")
    out = tmp_path / "raw.zarr"
    code, text = run_cli(capsys, "convert", csv_path, out, "--executor", "local")
    line = error_line(text)
    assert code == 2 and "no image file of the source exists (6 listed image(s) missing" in line
    assert "tests/data/Version1/images/r01c01f01p01-ch3sk1fk1fl1.tiff" in text
    assert done_keys(out) == set()


def test_load_data_row_of_only_commas_is_named(tmp_path, capsys) -> None:
    csv_path = tmp_path / "load_data.csv"
    csv_path.write_text("Metadata_Plate,Metadata_Well,Metadata_Site,FileName_OrigDNA,PathName_OrigDNA\n"
                        "P,A01,1,a.tiff,.\n\n,,,,\n")
    code, text = run_cli(capsys, "convert", csv_path, tmp_path / "raw.zarr", "--executor", "local")
    assert code == 2 and f"{csv_path}, line 4: empty row (only commas)" in error_line(text)


def test_convert_refuses_a_hyperstack_file_not_matching_the_pattern(tmp_path, capsys) -> None:
    import tifffile

    folder = tmp_path / "stacks"
    folder.mkdir()
    data = np.arange(2 * 32 * 32, dtype=np.uint16).reshape(2, 32, 32)
    for name in ("A01_s1.tif", "A01_s2.tif", "A1-site3.tif"):
        tifffile.imwrite(folder / name, data, photometric="minisblack")
    config = tmp_path / "c.yaml"
    config.write_text('source:\n  kind: hyperstack\n  filename_pattern: "(?P<well>[A-P]\\\\d{2})_s(?P<field>\\\\d+)"\n'
                      "  channel_names: [DNA, ER]\n")
    code, text = run_cli(capsys, "convert", folder, tmp_path / "raw.zarr", "--executor", "local", "-c", config)
    assert code == 2 and "A1-site3.tif: file name does not match filename_pattern" in text, text
    assert "Traceback" not in text


def test_convert_refuses_a_two_page_tiff_in_a_one_plane_slot(base, tmp_path, capsys) -> None:
    import tifffile

    src = copy_of(base, tmp_path, "images")
    slot = src / "r01c01f02p01-ch2sk1fk1fl1.tiff"
    plane = tifffile.imread(slot)
    tifffile.imwrite(slot, np.stack([plane, plane]), photometric="minisblack")
    out = tmp_path / "raw.zarr"
    code, text = run_cli(capsys, "convert", src, out, "--executor", "local")
    assert code == 2 and "Traceback" not in text, text
    assert f"{slot}: holds 2 images (pages) where one plane is expected" in text
    assert "A01-1" not in done_keys(out) and len(done_keys(out)) == 3


def test_tifffile_log_lines_of_a_damaged_file_go_into_the_error(tmp_path, capsys) -> None:
    from PIL import Image

    from jumpdenoise.errors import ImageError
    from jumpdenoise.io.layout import PlaneRef
    from jumpdenoise.io.tiff import read_plane

    path = tmp_path / "cut.tif"
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)).save(path, compression="tiff_lzw")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the IFD (at the end) is cut off
    with pytest.raises(ImageError) as info:
        read_plane(PlaneRef(path=str(path)), (64, 64), "uint16")
    assert str(path) in str(info.value) and "tifffile: " in str(info.value) and "invalid offset" in str(info.value)
    assert "invalid offset" not in capsys.readouterr().err  # not printed besides the error
