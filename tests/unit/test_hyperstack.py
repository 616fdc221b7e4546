"""Folders of multi-channel TIFF hyperstacks: CYX, YXC, ImageJ with labels; pixel-exact reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from jumpdenoise.config import SourceConfig
from jumpdenoise.errors import ImageError, SourceError
from jumpdenoise.io.discovery import discover
from jumpdenoise.io.hyperstack import read_hyperstacks
from jumpdenoise.io.tiff import probe, read_plane, read_source_field

PATTERN = r"_(?P<well>[A-P]\d{2})_s(?P<field>\d+)\.tiff?$"
LABELS = ["DNA", "ER", "AGP", "Mito"]


def make_folder(root: Path, kind: str, shape=(4, 48, 64)) -> dict[tuple[str, int], np.ndarray]:
    """Write 2 wells x 2 fields of (c, y, x) data in the given layout; return the data by (well, site)."""
    root.mkdir()
    rng = np.random.default_rng(0)
    data = {}
    for well in ("B03", "A01"):
        for site in (2, 1):
            arr = rng.integers(0, 60000, shape, dtype=np.uint16)
            data[(well, site)] = arr
            path = root / f"plate_{well}_s{site}.tif"
            if kind == "cyx":  # one page per channel
                tifffile.imwrite(path, arr, photometric="minisblack")
            elif kind == "yxc":
                tifffile.imwrite(path, np.moveaxis(arr, 0, -1), photometric="minisblack", planarconfig="contig")
            elif kind == "imagej":
                tifffile.imwrite(path, arr, imagej=True, metadata={"axes": "CYX", "Labels": LABELS})
    (root / "notes.txt").write_text("ignored")
    (root / "thumbnail.tif").write_bytes(b"")  # does not match the pattern: ignored
    return data


def check_pixels(layout, data):
    assert sorted((w.id, f.site) for w, f in layout.iter_fields()) == sorted(data)
    for well, field in layout.iter_fields():
        arr = read_source_field(field, layout.channel_names, layout.shape, layout.dtype)
        np.testing.assert_array_equal(arr, data[(well.id, field.site)])
        one = read_plane(field.planes[layout.channel_names[2]], layout.shape, layout.dtype)
        np.testing.assert_array_equal(one, data[(well.id, field.site)][2])


def test_cyx_with_channel_names_from_config(tmp_path):
    data = make_folder(tmp_path / "cyx", "cyx")
    layout = discover(SourceConfig(kind="hyperstack", path=tmp_path / "cyx", filename_pattern=PATTERN, channel_names=LABELS))
    assert layout.source_kind == "hyperstack"
    assert layout.metadata["axes"] == "CYX" and layout.metadata["unmatched_files"] == "1"
    assert layout.channel_names == LABELS
    assert layout.shape == (48, 64) and layout.dtype == "uint16"
    assert [w.id for w in layout.wells] == ["A01", "B03"]
    assert [f.site for f in layout.wells[0].fields] == [1, 2] and layout.wells[0].fields[1].index == 1
    check_pixels(layout, data)


def test_yxc_auto_axes_without_labels(tmp_path):
    data = make_folder(tmp_path / "yxc", "yxc")
    layout = read_hyperstacks(tmp_path / "yxc", filename_pattern=PATTERN)
    assert layout.metadata["axes"] == "YXC"
    assert layout.channel_names == ["ch1", "ch2", "ch3", "ch4"]
    check_pixels(layout, data)
    explicit = read_hyperstacks(tmp_path / "yxc", filename_pattern=PATTERN, axes="YXC", channel_names=LABELS)
    assert explicit.channel_names == LABELS
    assert probe(explicit.wells[0].fields[0].planes["DNA"].path, axes="YXC") == ((48, 64), "uint16")


def test_imagej_hyperstack_labels_from_file(tmp_path):
    data = make_folder(tmp_path / "ij", "imagej")
    layout = read_hyperstacks(tmp_path / "ij", filename_pattern=PATTERN, plate_name="IJ", channels=["Mito", "DNA"])
    assert layout.name == "IJ"
    assert layout.metadata["channel_names_from"] == "file"
    assert layout.channel_names == ["Mito", "DNA"]
    for well, field in layout.iter_fields():
        arr = read_source_field(field, ["Mito", "DNA"], layout.shape, layout.dtype)
        np.testing.assert_array_equal(arr, data[(well.id, field.site)][[3, 0]])


def test_row_column_groups_and_numeric_rows(tmp_path):
    folder = tmp_path / "rc"
    folder.mkdir()
    arr = np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16)
    tifffile.imwrite(folder / "r02c11f3.tif", arr, photometric="rgb", planarconfig="separate")  # axes SYX
    layout = read_hyperstacks(folder, filename_pattern=r"r(?P<row>\d+)c(?P<column>\d+)f(?P<field>\d+)")
    assert layout.wells[0].id == "B11" and layout.wells[0].fields[0].site == 3
    assert (layout.n_rows, layout.n_columns) == (8, 12)
    assert layout.metadata["axes"] == "CYX" and len(layout.channels) == 3
    first = layout.wells[0].fields[0]
    np.testing.assert_array_equal(read_source_field(first, layout.channel_names, (16, 16), "uint16"), arr)


def test_bad_inputs(tmp_path):
    data_dir = tmp_path / "cyx"
    make_folder(data_dir, "cyx")
    with pytest.raises(SourceError, match="no TIFF file name matches"):
        read_hyperstacks(data_dir, filename_pattern=r"nomatch_(?P<well>\w+)")
    with pytest.raises(SourceError, match="not a valid regular expression"):
        read_hyperstacks(data_dir, filename_pattern=r"(?P<well>")
    with pytest.raises(SourceError, match="4 channel\\(s\\) but channel_names lists 2"):
        read_hyperstacks(data_dir, filename_pattern=PATTERN, channel_names=["a", "b"])
    with pytest.raises(SourceError, match="filename_pattern is required"):
        discover(SourceConfig(kind="hyperstack", path=data_dir))
    # two files for the same (well, field)
    tifffile.imwrite(data_dir / "plate_A01_s1.tiff", np.zeros((4, 48, 64), np.uint16), photometric="minisblack")
    with pytest.raises(SourceError, match="duplicate image for well A01, field/site 1"):
        read_hyperstacks(data_dir, filename_pattern=PATTERN)


def test_file_unlike_the_first_is_an_image_error(tmp_path):
    data_dir = tmp_path / "cyx"
    make_folder(data_dir, "cyx")
    tifffile.imwrite(data_dir / "plate_B03_s2.tif", np.zeros((3, 48, 64), np.uint16), photometric="minisblack")  # 3 channels, not 4
    layout = read_hyperstacks(data_dir, filename_pattern=PATTERN, channel_names=LABELS)
    field = layout.well("B03").fields[1]
    with pytest.raises(ImageError, match="channel index 3 out of range"):
        read_source_field(field, LABELS, layout.shape, layout.dtype)
    tifffile.imwrite(data_dir / "plate_B03_s2.tif", np.zeros((4, 48, 64), np.uint8), photometric="minisblack")
    with pytest.raises(ImageError, match="dtype uint8"):
        read_source_field(field, LABELS, layout.shape, layout.dtype)
