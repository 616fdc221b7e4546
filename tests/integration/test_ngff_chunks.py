"""The direct whole-chunk writer gives the same files as zarr's own write, for every chunk grid and codec chain it takes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import zarr

from jumpdenoise.io.ngff_chunks import write_whole_chunks


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _create(path: Path, shape, chunks, dtype, cname, shuffle, write_empty: bool, crc: bool = False) -> zarr.Array:
    from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec

    return zarr.create_array(
        store=str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
        serializer=BytesCodec(),
        compressors=[BloscCodec(cname=cname, clevel=5, shuffle=shuffle)] + ([Crc32cCodec()] if crc else []),
        config={"write_empty_chunks": write_empty}, dimension_names=["c", "y", "x"],
    )


@pytest.mark.parametrize("crc", [False, True])
@pytest.mark.parametrize("dtype", ["uint16", "uint8", "float32"])
@pytest.mark.parametrize("cname,shuffle", [("lz4", "bitshuffle"), ("zstd", "shuffle"), ("lz4", "noshuffle")])
@pytest.mark.parametrize("chunks", [(1, 48, 64), (1, 24, 32)])
def test_direct_chunks_equal_zarr(tmp_path: Path, dtype: str, cname: str, shuffle: str, chunks, crc: bool) -> None:
    rng = np.random.default_rng(7)
    data = (rng.gamma(2.0, 300.0, size=(3, 48, 64))).astype(dtype)
    data[1] = 0  # an all-fill-value channel: written or not depending on write_empty_chunks
    for write_empty in (True, False):
        ours = _create(tmp_path / f"ours-{write_empty}", data.shape, chunks, dtype, cname, shuffle, write_empty, crc)
        ref = _create(tmp_path / f"ref-{write_empty}", data.shape, chunks, dtype, cname, shuffle, write_empty, crc)
        taken = write_whole_chunks(ours, data)
        if not taken:
            ours[...] = data
        ref[...] = data
        assert _files(tmp_path / f"ours-{write_empty}") == _files(tmp_path / f"ref-{write_empty}")
        np.testing.assert_array_equal(zarr.open_array(str(tmp_path / f"ours-{write_empty}"))[...], data)
    assert taken, "the fast path should take whole-chunk arrays"


@pytest.mark.parametrize("fill", [0.0, float("nan")])
def test_float_chunks_of_only_the_fill_value_are_treated_like_zarr(tmp_path: Path, fill: float) -> None:
    from zarr.codecs import BloscCodec, BytesCodec

    data = np.random.default_rng(3).normal(size=(4, 32, 32)).astype("float32")
    data[0] = np.nan  # empty only for a NaN fill value
    data[1] = -0.0  # equal to a 0 fill value
    data[2, :5] = np.nan  # partly NaN: never empty
    for name in ("ours", "ref"):
        arr = zarr.create_array(store=str(tmp_path / name), shape=data.shape, chunks=(1, 32, 32), dtype="float32",
                                fill_value=fill, serializer=BytesCodec(),
                                compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
                                config={"write_empty_chunks": False})
        if name == "ours":
            assert write_whole_chunks(arr, data)
        else:
            arr[...] = data
    assert _files(tmp_path / "ours") == _files(tmp_path / "ref")


def test_arrays_it_does_not_take_are_refused(tmp_path: Path) -> None:
    data = np.ones((2, 50, 64), dtype="uint16")
    arr = _create(tmp_path / "a", data.shape, (1, 48, 64), "uint16", "lz4", "bitshuffle", True)  # 48 does not tile 50
    assert write_whole_chunks(arr, data) is False
    assert not any(p.name.isdigit() for p in (tmp_path / "a").rglob("*") if p.is_file())


@pytest.mark.parametrize("crc", [False, True])
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
@pytest.mark.parametrize("chunks", [(1, 48, 64), (1, 24, 32), (3, 24, 64)])
def test_direct_read_equals_zarr_including_missing_chunks(tmp_path: Path, dtype: str, chunks, crc: bool) -> None:
    from jumpdenoise.io.ngff_chunks import read_whole_chunks

    data = np.random.default_rng(5).gamma(2.0, 300.0, size=(3, 48, 64)).astype(dtype)
    data[1] = 0  # not stored when write_empty_chunks is off: read back as the fill value
    arr = _create(tmp_path / "a", data.shape, chunks, dtype, "lz4", "bitshuffle", False, crc)
    arr[...] = data
    got = read_whole_chunks(zarr.open_array(str(tmp_path / "a")))
    assert got is not None and got.dtype == data.dtype
    np.testing.assert_array_equal(got, arr[...])
    np.testing.assert_array_equal(got, data)


def test_direct_read_and_zarr_both_refuse_damaged_or_missing_chunks(tmp_path: Path) -> None:
    """A flipped byte fails the checksum in both readers; a missing chunk is an error when asked."""
    from jumpdenoise.io.ngff_chunks import ChunkError, missing_chunk_files, read_whole_chunks

    data = np.random.default_rng(2).gamma(2.0, 300.0, size=(2, 48, 64)).astype("uint16")
    arr = _create(tmp_path / "a", data.shape, (1, 48, 64), "uint16", "lz4", "bitshuffle", True, crc=True)
    assert write_whole_chunks(arr, data)
    chunk = tmp_path / "a" / "c" / "1" / "0" / "0"
    payload = bytearray(chunk.read_bytes())
    payload[len(payload) // 2] ^= 0x04
    chunk.write_bytes(bytes(payload))
    with pytest.raises(ChunkError, match="checksum") as info:
        read_whole_chunks(arr)
    assert info.value.coords == (1, 0, 0) and info.value.path == chunk
    with pytest.raises(ValueError, match="checksum"):  # zarr's own codec agrees
        arr[1]
    chunk.unlink()
    assert missing_chunk_files(arr) == [((1, 0, 0), chunk)]
    np.testing.assert_array_equal(read_whole_chunks(arr)[0], data[0])  # fill value by default
    with pytest.raises(ChunkError, match="chunk file missing"):
        read_whole_chunks(arr, missing="error")


def test_direct_read_refuses_arrays_it_does_not_take(tmp_path: Path) -> None:
    from jumpdenoise.io.ngff_chunks import read_whole_chunks

    arr = _create(tmp_path / "a", (2, 50, 64), (1, 48, 64), "uint16", "lz4", "bitshuffle", True)
    assert read_whole_chunks(arr) is None


@pytest.mark.parametrize("shard,levels", [(False, 1), (True, 0)])
def test_direct_metadata_documents_equal_zarrs_create_hierarchy(tmp_path: Path, monkeypatch, shard: bool,
                                                               levels: int) -> None:
    """A plate created with the direct metadata writer has the same files, byte for byte,
    as one created by zarr.create_hierarchy, and zarr and the NGFF validator read it."""
    from jumpdenoise.config.convert import ConvertConfig
    from jumpdenoise.io import ngff_chunks
    from jumpdenoise.io.layout import Channel, FieldLayout, PlateLayout, PlaneRef, WellLayout, split_well
    from jumpdenoise.io.ngff import create_plate, validate_plate

    wells = []
    for w in ("A01", "B03", "P24"):
        row, col = split_well(w)
        wells.append(WellLayout(row=row, column=col, fields=[
            FieldLayout(index=f, site=f + 1, planes={c: PlaneRef(path=f"/x/{w}-{f}-{c}.tiff") for c in ("DNA", "ER")})
            for f in range(2)]))
    layout = PlateLayout(name="META", source_kind="hyperstack", source_path="x", n_rows=16, n_columns=24,
                         channels=[Channel(name=c, source_id=str(i)) for i, c in enumerate(("DNA", "ER"))],
                         wells=wells, shape=(64, 96), dtype="uint16", pixel_size_um=0.6)
    convert = ConvertConfig(shard=shard, pyramid_levels=levels)
    create_plate(tmp_path / "direct.zarr", layout, convert)
    monkeypatch.setattr(ngff_chunks, "write_metadata_documents", lambda root, nodes: False)
    create_plate(tmp_path / "zarr.zarr", layout, convert)
    direct, by_zarr = _files(tmp_path / "direct.zarr"), _files(tmp_path / "zarr.zarr")
    assert len(direct) > 3 * 2 * (1 + levels) and direct == by_zarr
    validate_plate(tmp_path / "direct.zarr")
    a = zarr.open_array(tmp_path / "direct.zarr" / "A" / "1" / "0" / "0", mode="r")
    assert a.shape == (2, 64, 96) and a.dtype == np.uint16 and not a[...].any()
