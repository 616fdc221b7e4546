"""Safe TIFF reading: pixel-exact on real Phenix files, clear errors on bad files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from jumpdenoise.errors import ImageError
from jumpdenoise.io.layout import FieldLayout, PlaneRef
from jumpdenoise.io.tiff import probe, read_plane, read_source_field
from shared_data import shared_data

JUMP = shared_data("jump")
V1 = JUMP / "phenix_v1" / "images"
REAL = V1 / "r01c01f01p01-ch1sk1fk1fl1.tiff"

needs_data = pytest.mark.skipif(not REAL.is_file(), reason="shared JUMP samples not available")


@needs_data
def test_read_plane_matches_tifffile_on_real_phenix_file():
    plane = read_plane(PlaneRef(path=str(REAL)), (1080, 1080), "uint16")
    expected = tifffile.imread(REAL)
    assert plane.dtype == np.uint16 and plane.shape == (1080, 1080)
    np.testing.assert_array_equal(plane, expected)


@needs_data
def test_read_plane_into_out_buffer():
    out = np.zeros((1080, 1080), np.uint16)
    res = read_plane(PlaneRef(path=str(REAL)), (1080, 1080), "uint16", out=out)
    assert res is out or np.shares_memory(res, out)
    np.testing.assert_array_equal(out, tifffile.imread(REAL))


@needs_data
def test_probe_real_file():
    assert probe(REAL) == ((1080, 1080), "uint16")


@needs_data
def test_read_field_stacks_channels_in_requested_order():
    files = {f"c{n}": V1 / f"r01c01f01p01-ch{n}sk1fk1fl1.tiff" for n in (5, 1, 3)}
    field = FieldLayout(index=0, site=1, planes={k: PlaneRef(path=str(p)) for k, p in files.items()})
    arr = read_source_field(field, ["c5", "c1", "c3"], (1080, 1080), "uint16")
    assert arr.shape == (3, 1080, 1080)
    for i, key in enumerate(["c5", "c1", "c3"]):
        np.testing.assert_array_equal(arr[i], tifffile.imread(files[key]))


def test_read_field_missing_channel_names_it(tmp_path):
    p = tmp_path / "a.tiff"
    tifffile.imwrite(p, np.zeros((8, 8), np.uint16))
    field = FieldLayout(index=0, site=3, planes={"DNA": PlaneRef(path=str(p))})
    with pytest.raises(ImageError, match="'ER'"):
        read_source_field(field, ["DNA", "ER"], (8, 8), "uint16")


@needs_data
def test_truncated_real_phenix_file(tmp_path):
    # Real Phenix files hold the pixels first and the IFD last: cut short, tifffile returns
    # an empty array with only a logged warning.
    data = REAL.read_bytes()
    cut = tmp_path / "cut.tiff"
    cut.write_bytes(data[: len(data) // 2])
    assert tifffile.imread(cut).size == 0  # the trap this module guards against
    with pytest.raises(ImageError) as err:
        read_plane(PlaneRef(path=str(cut)), (1080, 1080), "uint16")
    assert str(cut) in str(err.value) and "truncated" in err.value.reason


def test_truncated_file_with_header_first(tmp_path):
    arr = np.random.default_rng(0).integers(0, 5000, (256, 256), dtype=np.uint16)
    full = tmp_path / "full.tiff"
    tifffile.imwrite(full, arr, compression="lzw", rowsperstrip=256)
    cut = tmp_path / "cut.tiff"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    with pytest.raises(ImageError, match="truncated") as err:
        read_plane(PlaneRef(path=str(cut)), (256, 256), "uint16")
    assert err.value.path == str(cut)


def test_corrupt_compressed_data(tmp_path):
    arr = np.random.default_rng(1).integers(0, 5000, (256, 256), dtype=np.uint16)
    path = tmp_path / "bad.tiff"
    tifffile.imwrite(path, arr, compression="lzw", rowsperstrip=256)
    raw = bytearray(path.read_bytes())
    offset = tifffile.TiffFile(path).pages[0].dataoffsets[0]
    raw[offset + 100: offset + 4000] = np.random.default_rng(2).integers(0, 256, 3900, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(ImageError, match="corrupt"):
        read_plane(PlaneRef(path=str(path)), (256, 256), "uint16")


def test_not_a_tiff_and_missing_file(tmp_path):
    junk = tmp_path / "junk.tiff"
    junk.write_bytes(b"this is not a tiff file at all" * 10)
    with pytest.raises(ImageError, match="not a readable TIFF"):
        read_plane(PlaneRef(path=str(junk)), (8, 8), "uint16")
    with pytest.raises(ImageError, match="not found"):
        read_plane(PlaneRef(path=str(tmp_path / "nope.tiff")), (8, 8), "uint16")
    with pytest.raises(ImageError):
        probe(junk)


def test_wrong_shape_and_dtype(tmp_path):
    small = tmp_path / "small.tiff"
    tifffile.imwrite(small, np.zeros((100, 120), np.uint16), compression="lzw")
    with pytest.raises(ImageError, match=r"shape \(100, 120\), expected \(1080, 1080\)"):
        read_plane(PlaneRef(path=str(small)), (1080, 1080), "uint16")
    eight = tmp_path / "eight.tiff"
    tifffile.imwrite(eight, np.zeros((100, 120), np.uint8))
    with pytest.raises(ImageError, match="dtype uint8, expected uint16"):
        read_plane(PlaneRef(path=str(eight)), (100, 120), "uint16")


@needs_data
def test_copy_of_real_file_reads_identically(tmp_path):
    copy = tmp_path / REAL.name
    shutil.copy(REAL, copy)
    np.testing.assert_array_equal(
        read_plane(PlaneRef(path=str(copy)), (1080, 1080), "uint16"), tifffile.imread(REAL)
    )
