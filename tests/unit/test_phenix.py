"""Phenix / Harmony Index reading on the real pe2loaddata fixtures (v1, v5, v7) and cpg0000."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from jumpdenoise.config import SourceConfig, load_config
from jumpdenoise.errors import SourceError
from jumpdenoise.io.discovery import discover, load_channel_map
from jumpdenoise.io.loaddata import read_load_data
from jumpdenoise.io.phenix import read_phenix, read_phenix_files
from jumpdenoise.io.phenix_writer import write_index_xml
from shared_data import shared_data

JUMP = shared_data("jump")
CASES = {  # version -> (folder, index file name)
    "1": ("phenix_v1", "Index.idx.xml"),
    "5": ("phenix_v5", "Index.idx.xml"),
    "7": ("phenix_v7_index", "Index.xml"),
}
needs_data = pytest.mark.skipif(not (JUMP / "phenix_v1").is_dir(), reason="shared JUMP samples not available")


def full_table(layout):
    """(well, site, channel, path) of every listed image, present or missing."""
    rows = [(w.id, f.site, ch, ref.path) for w, f in layout.iter_fields() for ch, ref in f.planes.items()]
    rows += [(m.well, m.site, m.channel, m.path) for m in layout.missing]
    return sorted(rows)


@needs_data
@pytest.mark.parametrize("version", sorted(CASES))
def test_phenix_table_equals_expected_load_data_csv(version):
    folder, _ = CASES[version]
    base = JUMP / folder
    phenix = discover(SourceConfig(path=base / "images", channel_map_file=base / f"config_v{version}.yml"))
    expected = read_load_data(
        base / f"load_data_version{version}.csv",
        path_rewrite={f"tests/data/Version{version}/images/": f"{base}/images/"},
    )
    assert full_table(phenix) == full_table(expected)
    assert sorted(phenix.channel_names) == sorted(expected.channel_names)
    assert phenix.name == expected.name
    assert phenix.shape == expected.shape


@needs_data
def test_v1_harmony_v5_namespace_with_tiffs():
    layout = read_phenix(JUMP / "phenix_v1" / "images")
    assert layout.name == "BR00121482"
    assert (layout.n_rows, layout.n_columns) == (16, 24)
    assert layout.channel_names == ["Alexa 647", "Alexa 568", "488 long", "Alexa 488", "HOECHST 33342", "Brightfield"]
    assert [c.source_id for c in layout.channels] == ["1", "2", "3", "4", "5", "6"]
    assert layout.channels[4].excitation_nm == 405 and layout.channels[4].emission_nm == 456
    assert layout.shape == (1080, 1080) and layout.dtype == "uint16"
    assert layout.pixel_size_um == pytest.approx(0.597976, rel=1e-5)
    assert layout.missing == []
    (well,) = layout.wells
    assert well.id == "A01" and [f.site for f in well.fields] == [1]
    assert well.fields[0].planes["HOECHST 33342"].path.endswith("r01c01f01p01-ch5sk1fk1fl1.tiff")
    assert layout.metadata["index_namespace"] == "http://www.perkinelmer.com/PEHH/HarmonyV5"


@needs_data
def test_v5_metadata_only_images_are_missing_not_fatal():
    layout = read_phenix(JUMP / "phenix_v5" / "images" / "Index.idx.xml")
    assert layout.name == "BR00122249"
    assert "HOECHST 33342" not in layout.channel_names  # v5 has no DNA channel
    assert layout.channel_names[0] == "Digital Phase Contrast"
    assert layout.wells == [] and len(layout.missing) == 6
    assert {m.well for m in layout.missing} == {"A01"}


@needs_data
def test_v7_guid_namespace_channel_data_in_maps():
    layout = read_phenix(JUMP / "phenix_v7_index")
    assert layout.metadata["index_namespace"].endswith("/HarmonyV7")
    assert (layout.n_rows, layout.n_columns) == (8, 12)
    assert layout.channel_names == [
        "Alexa 488", "Alexa 568", "Alexa 488 Em 650", "405ex, 570-630-em)", "Alexa 647", "HOECHST 33342", "Brightfield",
    ]
    assert layout.shape == (2160, 2160)
    assert layout.pixel_size_um == pytest.approx(0.296688, rel=1e-5)
    assert len(layout.missing) == 7


@needs_data
def test_flatfield_profile_channel_name_fallback(tmp_path):
    text = (JUMP / "phenix_v1" / "images" / "Index.idx.xml").read_text()
    stripped = "".join(
        line for line in text.splitlines(keepends=True) if "<ChannelName>" not in line
    )
    (tmp_path / "Index.idx.xml").write_text(stripped)
    layout = read_phenix(tmp_path)
    assert layout.channel_names == ["Alexa 647", "Alexa 568", "488 long", "Alexa 488", "HOECHST 33342", "Brightfield"]


@needs_data
def test_missing_file_reported_rest_kept(tmp_path):
    shutil.copytree(JUMP / "phenix_v1" / "images", tmp_path / "images")
    (tmp_path / "images" / "r01c01f01p01-ch3sk1fk1fl1.tiff").unlink()
    layout = discover(SourceConfig(path=tmp_path / "images", channel_map={"488 long": "RNA", "HOECHST 33342": "DNA"}))
    assert [(m.well, m.site, m.channel) for m in layout.missing] == [("A01", 1, "RNA")]
    planes = layout.wells[0].fields[0].planes
    assert "RNA" not in planes and "DNA" in planes and len(planes) == 5
    with pytest.raises(SourceError, match="missing"):
        discover(SourceConfig(path=tmp_path / "images", require_files=True))


@needs_data
def test_cpg0000_folder_without_index_uses_channel_table():
    folder = JUMP / "cpg0000_BR00117010"
    layout = discover(SourceConfig(path=folder))  # auto: Images/ of Phenix-named TIFFs
    assert layout.source_kind == "phenix"
    assert layout.name == "cpg0000_BR00117010"
    assert layout.channel_names == ["Mito", "AGP", "RNA", "ER", "DNA", "Brightfield"]
    assert [c.source_id for c in layout.channels] == ["1", "2", "3", "4", "5", "8"]  # not contiguous
    assert layout.wells[0].fields[0].planes["Brightfield"].path.endswith("ch8sk1fk1fl1.tiff")
    assert layout.shape == (1080, 1080)
    table = json.loads((folder / "channel_table.json").read_text())
    assert load_channel_map(folder / "channel_table.json") == table


@needs_data
def test_channel_subset_and_unknown_channel():
    base = JUMP / "phenix_v1"
    layout = discover(SourceConfig(path=base / "images", channel_map_file=base / "config_v1.yml", channels=["DNA", "Mito"]))
    assert layout.channel_names == ["DNA", "Mito"]
    assert set(layout.wells[0].fields[0].planes) == {"DNA", "Mito"}
    with pytest.raises(SourceError, match="no channel named"):
        discover(SourceConfig(path=base / "images", channels=["Nope"]))


def test_unreadable_xml_names_the_file(tmp_path):
    bad = tmp_path / "Index.idx.xml"
    bad.write_text("<EvaluationInputData><Images><Image>")
    with pytest.raises(SourceError, match="Index.idx.xml"):
        read_phenix(bad)
    other = tmp_path / "x" / "Index.xml"
    other.parent.mkdir()
    other.write_text("<?xml version='1.0'?><Something/>")
    with pytest.raises(SourceError, match="not a Harmony Index XML"):
        read_phenix(other.parent)


def test_duplicate_image_names_well_field_channel(tmp_path):
    xml = tmp_path / "Index.idx.xml"
    write_index_xml(xml, plate_name="P", wells=[(1, 1)], fields=1, channels=("DNA", "ER"), size=(16, 16))
    text = xml.read_text()
    start = text.index("    <Image Version")
    end = text.index("</Image>\n", start) + len("</Image>\n")
    xml.write_text(text[:end] + text[start:end] + text[end:])
    with pytest.raises(SourceError, match=r"duplicate image for well A01, field/site 1, channel 'DNA'"):
        read_phenix(xml)


def test_planes_and_timepoints_keep_the_first(tmp_path):
    xml = tmp_path / "Index.idx.xml"
    write_index_xml(xml, plate_name="P", wells=[(2, 3)], fields=2, channels=("DNA",), size=(16, 16))
    text = xml.read_text()
    extra = text.replace("<PlaneID>1</PlaneID>", "<PlaneID>2</PlaneID>").replace("p01-ch", "p02-ch")
    block = extra[extra.index("  <Images>\n") + 11: extra.index("  </Images>")]
    xml.write_text(text.replace("  </Images>", block + "  </Images>"))
    layout = read_phenix(xml)
    assert layout.metadata["plane"] == "1" and layout.metadata["n_planes"] == "2"
    assert layout.metadata["images_other_planes_or_timepoints"] == "2"
    assert all("p01-ch" in m.path for m in layout.missing) and len(layout.missing) == 2
    assert {m.well for m in layout.missing} == {"B03"}
    assert read_phenix(xml, plane=2).metadata["plane"] == "2"
    with pytest.raises(SourceError, match="no image with TimepointID 0 and PlaneID 7"):
        read_phenix(xml, plane=7)


def test_streaming_parse_of_100k_image_index(tmp_path):
    xml = tmp_path / "Index.idx.xml"
    wells = [(r, c) for r in range(1, 33) for c in range(1, 49)]  # 1536-well plate
    n = write_index_xml(xml, plate_name="BIG", wells=wells, fields=9, channels=tuple(f"C{i}" for i in range(8)),
                        size=(1080, 1080), compact=True)
    assert n == 110_592
    layout = read_phenix(xml)
    assert (layout.n_rows, layout.n_columns) == (32, 48)
    assert len(layout.missing) == n and layout.channel_names == [f"C{i}" for i in range(8)]
    assert layout.shape == (1080, 1080)
    assert layout.missing[-1].well == "AF48"


def test_example_configs_are_valid():
    root = Path(__file__).resolve().parents[2] / "configs"
    kinds = {}
    for name in ("convert_phenix.yaml", "convert_load_data.yaml", "convert_hyperstack.yaml"):
        cfg = load_config(root / name)
        kinds[name] = cfg.source.kind
    assert kinds == {"convert_phenix.yaml": "phenix", "convert_load_data.yaml": "load_data",
                     "convert_hyperstack.yaml": "hyperstack"}


@needs_data
def test_read_phenix_files_rejects_folder_without_phenix_names(tmp_path):
    with pytest.raises(SourceError, match="no Phenix-named TIFF"):
        read_phenix_files(tmp_path)
