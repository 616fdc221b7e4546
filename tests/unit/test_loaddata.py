"""load_data CSV reading: FileName/PathName, URL, path rewrite, illum columns, bad inputs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from jumpdenoise.config import SourceConfig
from jumpdenoise.errors import SourceError
from jumpdenoise.io.discovery import discover
from jumpdenoise.io.loaddata import read_load_data
from shared_data import shared_data

JUMP = shared_data("jump")
V1 = JUMP / "phenix_v1"
CPG0000 = JUMP / "cpg0000_BR00117010" / "Images"
CPG_CHANNELS = {"Mito": 1, "AGP": 2, "RNA": 3, "ER": 4, "DNA": 5, "Brightfield": 8}
needs_data = pytest.mark.skipif(not V1.is_dir(), reason="shared JUMP samples not available")


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def cpg_row(folder: str, well: str = "A01", site: int = 1, plate: str = "BR00117010", illum: bool = False) -> dict:
    row = {}
    for ch, n in CPG_CHANNELS.items():
        row[f"FileName_Orig{ch}"] = f"r01c01f01p01-ch{n}sk1fk1fl1.tiff"
        row[f"PathName_Orig{ch}"] = folder
    row.update(Metadata_Plate=plate, Metadata_Well=well, Metadata_Site=str(site))
    if illum:
        for ch in CPG_CHANNELS:
            row[f"FileName_Illum{ch}"] = f"{plate}_Illum{ch}.npy"
            row[f"PathName_Illum{ch}"] = "/somewhere/illum"
    return row


@needs_data
def test_pe2loaddata_csv_with_path_rewrite():
    layout = read_load_data(
        V1 / "load_data_version1.csv", path_rewrite={"tests/data/Version1/images/": f"{V1}/images/"}
    )
    assert layout.name == "BR00121482" and layout.source_kind == "load_data"
    assert layout.channel_names == ["RNA", "ER", "AGP", "Mito", "Brightfield", "DNA"]
    assert layout.channels[5].source_id == "5"  # Metadata_ChannelID_OrigDNA
    assert layout.shape == (1080, 1080) and layout.dtype == "uint16"
    assert layout.pixel_size_um == pytest.approx(0.597976, rel=1e-5)
    assert layout.missing == []
    assert layout.wells[0].fields[0].planes["DNA"].path == f"{V1}/images/r01c01f01p01-ch5sk1fk1fl1.tiff"


@needs_data
def test_without_rewrite_the_repo_relative_paths_are_missing():
    layout = read_load_data(V1 / "load_data_version1.csv")
    assert len(layout.missing) == 6 and layout.wells == []
    assert layout.shape == (1080, 1080)  # from Metadata_ImageSizeX/Y


@needs_data
def test_cpg0000_via_csv_with_illum_columns(tmp_path):
    csv_path = write_csv(tmp_path / "load_data_with_illum.csv", [cpg_row(str(CPG0000) + "/", illum=True)])
    layout = discover(SourceConfig(path=csv_path))
    assert layout.source_kind == "load_data"
    assert layout.channel_names == list(CPG_CHANNELS)
    assert layout.metadata["csv_path"] == str(csv_path) and layout.metadata["illum_columns"] == "yes"
    assert layout.wells[0].fields[0].planes["Brightfield"].path.endswith("ch8sk1fk1fl1.tiff")


@needs_data
def test_url_columns_file_urls_and_s3_rewrite(tmp_path):
    row = {f"URL_Orig{ch}": f"file://{CPG0000}/r01c01f01p01-ch{n}sk1fk1fl1.tiff" for ch, n in CPG_CHANNELS.items()}
    row.update(Metadata_Plate="P", Metadata_Well="B02", Metadata_Site="3")
    layout = read_load_data(write_csv(tmp_path / "file.csv", [row]))
    assert layout.wells[0].id == "B02" and layout.wells[0].fields[0].site == 3
    assert layout.wells[0].fields[0].planes["DNA"].path == f"{CPG0000}/r01c01f01p01-ch5sk1fk1fl1.tiff"

    s3 = {k: v.replace(f"file://{CPG0000}", "s3://cellpainting-gallery/cpg0000/Images") if k.startswith("URL") else v
          for k, v in row.items()}
    s3_csv = write_csv(tmp_path / "s3.csv", [s3])
    with pytest.raises(SourceError, match="path_rewrite"):
        read_load_data(s3_csv)
    layout = read_load_data(s3_csv, path_rewrite={"s3://cellpainting-gallery/cpg0000/Images": str(CPG0000)})
    assert layout.missing == [] and len(layout.wells[0].fields[0].planes) == 6


@needs_data
def test_relative_paths_resolve_against_csv_folder(tmp_path):
    (tmp_path / "imgs").symlink_to(CPG0000)
    layout = read_load_data(write_csv(tmp_path / "rel.csv", [cpg_row("imgs")]))
    assert layout.missing == []
    assert layout.wells[0].fields[0].planes["DNA"].path == str(tmp_path / "imgs" / "r01c01f01p01-ch5sk1fk1fl1.tiff")


@needs_data
def test_several_plates_need_plate_name(tmp_path):
    rows = [cpg_row(str(CPG0000), plate="P1"), cpg_row(str(CPG0000), plate="P2", well="A02")]
    path = write_csv(tmp_path / "two.csv", rows)
    with pytest.raises(SourceError, match=r"holds plates \['P1', 'P2'\]"):
        read_load_data(path)
    layout = read_load_data(path, plate_name="P2", channels=["DNA", "ER"])
    assert layout.name == "P2" and [w.id for w in layout.wells] == ["A02"]
    assert layout.channel_names == ["DNA", "ER"]


@needs_data
def test_duplicate_well_site_is_refused(tmp_path):
    path = write_csv(tmp_path / "dup.csv", [cpg_row(str(CPG0000)), cpg_row(str(CPG0000))])
    with pytest.raises(SourceError, match=r"duplicate image for well A01, field/site 1, channel 'Mito'"):
        read_load_data(path)


def test_unreadable_or_malformed_csv_names_the_file(tmp_path):
    with pytest.raises(SourceError, match="nope.csv"):
        read_load_data(tmp_path / "nope.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SourceError, match="binary.csv"):
        read_load_data(binary)
    other = write_csv(tmp_path / "other.csv", [{"a": "1", "b": "2"}])
    with pytest.raises(SourceError, match="not a load_data CSV"):
        read_load_data(other)
    bad_well = write_csv(tmp_path / "bad_well.csv", [{"FileName_OrigDNA": "x.tif", "PathName_OrigDNA": "/x",
                                                     "Metadata_Well": "??", "Metadata_Site": "1"}])
    with pytest.raises(SourceError, match="line 2"):
        read_load_data(bad_well)
