"""Convert stage on real samples and generated plates: pixels, validation, statistics, safety.

Real samples: ``shared/data/jump/phenix_v1`` (one field, 6 channels, Index.idx.xml) and the
cpg0000 field (6 Phenix TIFFs without Index, channel names from ``channel_table.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from plate_files import tree_bytes

from jumpdenoise.config import ExecutorConfig, load_config
from jumpdenoise.errors import OutputExistsError, UnitFailures, UnsafeOutputError
from jumpdenoise.executors import make_executor
from jumpdenoise.executors.dask import DaskExecutor
from jumpdenoise.executors.local import LocalExecutor
from jumpdenoise.io.discovery import discover
from jumpdenoise.io.ngff import done_keys, plate_info, read_field, validate_plate
from jumpdenoise.io.synthetic import generate_plate
from jumpdenoise.io.layout import PlaneRef
from jumpdenoise.io.tiff import _decode_libtiff, read_plane
from jumpdenoise.stages.base import CONVERT
from jumpdenoise.stages.convert import convert, load_layout
from jumpdenoise.stages.verify import verify_plate
from shared_data import shared_data

JUMP = shared_data("jump")
PERCENTILES = (0.1, 1, 50, 99, 99.9)


def make_config(source: Path, out: Path, *, workers: int = 1, kind: str = "local", source_extra=None, **convert_kw):
    """Configuration converting ``source`` to ``out``."""
    return load_config(overrides={
        "source": {"path": str(source), **(source_extra or {})},
        "paths": {"raw_plate": str(out)},
        "convert": convert_kw,
        "executor": {"kind": kind, "workers": workers},
    })


def source_planes(plate: Path):
    """(well, field, channel index, channel, tiff path) of every plane, from the saved layout."""
    layout, _ = load_layout(plate)
    for w, f in layout.iter_fields():
        for c, ch in enumerate(layout.channel_names):
            if ch in f.planes:
                yield w.id, f.index, c, ch, f.planes[ch].path


def assert_pixel_exact(plate: Path, skip: set[str] = frozenset()) -> int:
    """Compare every converted field with tifffile.imread of its TIFFs; return planes compared."""
    n = 0
    cache: dict[tuple[str, int], np.ndarray] = {}
    for well, field, c, ch, path in source_planes(plate):
        if f"{well}-{field}" in skip:
            continue
        if (well, field) not in cache:
            cache = {(well, field): read_field(plate, well, field)}
        expected = tifffile.imread(path)
        got = cache[(well, field)][c]
        assert got.dtype == expected.dtype and got.shape == expected.shape, (path, got.shape, expected.shape)
        assert np.array_equal(got, expected), f"{well}/{field} {ch} differs from {path}"
        n += 1
    return n


def assert_stats_match_numpy(summary: dict, values: np.ndarray) -> None:
    """Statistics summary vs numpy over the same pixels."""
    v = values.astype(np.float64).ravel()
    assert summary["count"] == v.size
    assert summary["min"] == v.min() and summary["max"] == v.max()
    assert summary["mean"] == pytest.approx(v.mean(), rel=1e-12)
    assert summary["std"] == pytest.approx(v.std(), rel=1e-9)
    for q in PERCENTILES:
        assert summary[f"p{q:g}"] == pytest.approx(np.percentile(values, q), rel=1e-12, abs=1e-9), q


@pytest.fixture(scope="module")
def small_plate(tmp_path_factory) -> Path:
    """A generated Phenix-layout plate: 2 x 3 wells, 2 fields, 3 channels, 64 x 80 px."""
    root = tmp_path_factory.mktemp("small_plate")
    return generate_plate(root, plate_name="SMALL", rows=2, columns=3, fields=2, channels=("DNA", "ER", "Mito"),
                          size=(64, 80), seed=7, ground_truth=False, workers=1)


# ----------------------------------------------------------------------------- real samples


def test_phenix_v1_sample_pixel_exact_valid_statistics(tmp_path):
    out = tmp_path / "v1.zarr"
    report = convert(make_config(JUMP / "phenix_v1" / "images", out))
    assert (report.converted, report.skipped, report.failures) == (1, 0, {})
    assert report.bytes_read == sum(p.stat().st_size for p in (JUMP / "phenix_v1" / "images").glob("*.tiff"))
    validate_plate(out)
    info = plate_info(out)
    assert info.channels == ["Alexa 647", "Alexa 568", "488 long", "Alexa 488", "HOECHST 33342", "Brightfield"]
    assert info.shape_yx == (1080, 1080) and info.dtype == "uint16"
    assert assert_pixel_exact(out) == 6
    # statistics of each channel vs numpy over the TIFF, and the display windows set from them
    layout, _ = load_layout(out)
    field = layout.wells[0].fields[0]
    image_meta = json.loads((out / "A" / "1" / "0" / "zarr.json").read_text())
    windows = image_meta["attributes"]["ome"]["omero"]["channels"]
    for c, ch in enumerate(info.channels):
        values = tifffile.imread(field.planes[ch].path)
        assert_stats_match_numpy(info.statistics["plate"][ch], values)
        assert_stats_match_numpy(info.statistics["wells"]["A01"][ch], values)
        assert windows[c]["label"] == ch
        assert windows[c]["window"]["start"] == info.statistics["plate"][ch]["p0.1"]
        assert windows[c]["window"]["end"] == info.statistics["plate"][ch]["p99.9"]
    csv_rows = (out / ".jumpdenoise" / "statistics.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 2 * 6  # header + plate and well rows per channel
    # opens lazily with dask
    import dask.array as da

    arr = da.from_zarr(str(out / "A" / "1" / "0" / "0"))
    assert arr.shape == (6, 1080, 1080) and int(arr[4].max().compute()) == info.statistics["plate"][info.channels[4]]["max"]


def test_cpg0000_field_with_channel_table(tmp_path):
    src = JUMP / "cpg0000_BR00117010"
    out = tmp_path / "cpg.zarr"
    cfg = make_config(src / "Images", out, source_extra={"channel_map_file": str(src / "channel_table.json")})
    convert(cfg)
    info = plate_info(out)
    assert set(info.channels) == {"Mito", "AGP", "RNA", "ER", "DNA", "Brightfield"}
    assert assert_pixel_exact(out) == 6
    assert verify_plate(cfg.source, out).ok


# ----------------------------------------------------------------------------- generated plates


def test_serial_and_parallel_conversions_are_byte_identical(small_plate, tmp_path):
    serial = tmp_path / "serial.zarr"
    convert(make_config(small_plate, serial))
    reference = tree_bytes(serial)
    assert sum("/0/c/" in k for k in reference) == 12 * 3  # level 0: one chunk per channel and field
    validate_plate(serial)
    assert assert_pixel_exact(serial) == 36

    pool = tmp_path / "pool.zarr"
    convert(make_config(small_plate, pool, fields_per_unit=3), executor=LocalExecutor(2))
    assert tree_bytes(pool) == reference

    dask_plate = tmp_path / "dask.zarr"
    cfg = make_config(small_plate, dask_plate, kind="dask", workers=2)
    with DaskExecutor(ExecutorConfig(kind="dask", workers=2), dashboard_address=":0", quiet=True) as ex:
        report = convert(cfg, executor=ex)
    assert report.converted == 12
    assert tree_bytes(dask_plate) == reference

    # the default of `jumpdenoise convert`: a LocalCluster whose workers are threads of this process
    threads = tmp_path / "threads.zarr"
    cfg = make_config(small_plate, threads, kind="dask", workers=2, fields_per_unit=1)
    with DaskExecutor(cfg.executor, dashboard_address=":0", quiet=True, processes=False) as ex:
        report = convert(cfg, executor=ex)
        assert ex.cluster.processes is False and len(ex.client.nthreads()) == 1
    assert report.converted == 12
    assert tree_bytes(threads) == reference
    assert not zarr.config.get("array.write_empty_chunks")  # the process-wide setting is restored


def test_make_executor_runs_conversion_on_a_local_dask_cluster_in_threads(tmp_path):
    def make(cfg):
        return make_executor(cfg.executor, CONVERT)

    threaded = make(make_config(tmp_path, tmp_path / "o.zarr", kind="dask", workers=2))
    assert isinstance(threaded, DaskExecutor) and threaded.processes is False
    cfg = make_config(tmp_path, tmp_path / "o.zarr", kind="dask", workers=2)
    remote = cfg.model_copy(update={"executor": cfg.executor.model_copy(update={"scheduler_address": "tcp://x:1"})})
    assert make(remote).processes is True
    local = make(make_config(tmp_path, tmp_path / "o.zarr", workers=2))
    assert isinstance(local, LocalExecutor) and local.workers == 2


def test_libtiff_and_tifffile_decode_the_same_pixels(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 60000, (70, 90), dtype=np.uint16)
    ref = PlaneRef(path=str(tmp_path / "lzw.tif"))
    tifffile.imwrite(ref.path, data, compression="lzw")
    with tifffile.TiffFile(ref.path) as tif:
        by_libtiff = _decode_libtiff(tif, tif.pages[0], None)
        by_tifffile = tif.pages[0].asarray()
    assert by_libtiff is not None and np.array_equal(by_libtiff, data) and np.array_equal(by_tifffile, data)
    variants = {"predictor": {"predictor": True}, "strips": {"rowsperstrip": 16}, "tiles": {"tile": (32, 32)},
                "big-endian": {"byteorder": ">"}}
    for name, kw in variants.items():  # LZW variants: libtiff decodes them all like tifffile
        path = tmp_path / f"{name}.tif"
        tifffile.imwrite(path, data, compression="lzw", **kw)
        with tifffile.TiffFile(path) as tif:
            got = _decode_libtiff(tif, tif.pages[0], None)
        assert got is not None and np.array_equal(got, data), name
        assert np.array_equal(read_plane(PlaneRef(path=str(path)), (70, 90), "uint16"), data), name
    out = np.zeros((2, 70, 90), np.uint16)
    assert np.array_equal(read_plane(ref, (70, 90), "uint16", out=out[1]), data) and np.array_equal(out[1], data)
    deflate = PlaneRef(path=str(tmp_path / "zlib.tif"))
    tifffile.imwrite(deflate.path, data, compression="zlib")
    with tifffile.TiffFile(deflate.path) as tif:  # not LZW: tifffile decodes it
        assert _decode_libtiff(tif, tif.pages[0], None) is None
    assert np.array_equal(read_plane(deflate, (70, 90), "uint16"), data)


def test_statistics_per_well_and_plate_match_numpy(small_plate, tmp_path):
    out = tmp_path / "stats.zarr"
    convert(make_config(small_plate, out, fields_per_unit=2), executor=LocalExecutor(2))
    info = plate_info(out)
    per_well: dict[str, dict[str, list[np.ndarray]]] = {}
    for well, _field, _c, ch, path in source_planes(out):
        per_well.setdefault(well, {}).setdefault(ch, []).append(tifffile.imread(path))
    assert set(info.statistics["wells"]) == set(per_well) == set(info.wells)
    for ch in info.channels:
        for well, planes in per_well.items():
            assert_stats_match_numpy(info.statistics["wells"][well][ch], np.stack(planes[ch]))
        assert_stats_match_numpy(info.statistics["plate"][ch], np.stack([p for w in per_well.values() for p in w[ch]]))


def _break(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.chmod(0o644)
    if how == "truncated":
        path.write_bytes(data[: len(data) * 6 // 10])
    elif how == "corrupt":
        path.write_bytes(b"this is not a TIFF file" + data[23:])
    elif how == "shape":
        tifffile.imwrite(path, np.zeros((32, 32), np.uint16), compression="lzw")
    elif how == "dtype":
        tifffile.imwrite(path, np.zeros((64, 80), np.uint8), compression="lzw")
    elif how == "garbled":  # valid header, LZW codes overwritten: neither libtiff nor tifffile decodes it
        with tifffile.TiffFile(path) as tif:
            start = tif.pages[0].dataoffsets[0] + tif.pages[0].databytecounts[0] // 3
        path.write_bytes(data[:start] + b"\xff" * 64 + data[start + 64:])


def test_bad_inputs_named_others_converted_nothing_half_marked(tmp_path):
    src = generate_plate(tmp_path / "src", plate_name="BAD", rows=2, columns=3, fields=2, channels=("DNA", "ER"),
                         size=(64, 80), seed=11, missing=1, ground_truth=False, workers=1)
    out = tmp_path / "bad.zarr"
    layout = discover(make_config(src, out).source)
    missing = layout.missing[0]
    missing_key = f"{missing.well}-{next(f.index for f in layout.well(missing.well).fields if f.site == missing.site)}"
    candidates = [(w.id, f) for w, f in layout.iter_fields() if f"{w.id}-{f.index}" != missing_key]
    broken = {}
    for (well, field), how in zip(candidates, ["truncated", "corrupt", "shape", "dtype", "garbled"]):
        path = Path(field.planes["ER"].path)
        _break(path, how)
        broken[f"{well}-{field.index}"] = (path.name, how)

    with pytest.raises(UnitFailures) as err:
        convert(make_config(src, out, fields_per_unit=1), executor=LocalExecutor(2))
    failures = err.value.failures
    assert set(failures) == set(broken) | {missing_key}
    for key, (name, how) in broken.items():
        assert name in failures[key], failures[key]
        assert {"truncated": "truncated", "corrupt": "TIFF", "shape": "shape", "dtype": "dtype",
                "garbled": "cannot decode"}[how] in failures[key]
    assert Path(missing.path).name in failures[missing_key] and "missing" in failures[missing_key]
    # the other fields are converted, exactly; the failed ones are not marked done
    done = done_keys(out)
    assert done == {f"{w.id}-{f.index}" for w, f in layout.iter_fields()} - set(failures)
    assert assert_pixel_exact(out, skip=set(failures)) == 2 * len(done)
    saved = json.loads((out / ".jumpdenoise" / "failures.json").read_text())
    assert set(saved) == set(failures)
    assert Path(missing.path).name in (out / ".jumpdenoise" / "missing_images.csv").read_text()
    info = plate_info(out)
    assert info.statistics["plate"]["DNA"]["count"] == len(done) * 64 * 80
    # a rerun resumes: only the failed fields are attempted again, and fail again
    with pytest.raises(UnitFailures) as again:
        convert(make_config(src, out, fields_per_unit=1))
    assert set(again.value.failures) == set(failures)
    # once the files are repaired (and the missing one restored), a rerun completes the plate
    rng = np.random.default_rng(0)
    for path in [src / name for name, _ in broken.values()] + [Path(missing.path)]:
        tifffile.imwrite(path, rng.integers(0, 4000, (64, 80), dtype=np.uint16), compression="lzw")
    report = convert(make_config(src, out))
    assert (report.converted, report.skipped, report.failures) == (len(failures), len(done), {})
    assert assert_pixel_exact(out) == 2 * 12
    assert plate_info(out).statistics["plate"]["DNA"]["count"] == 12 * 64 * 80


def test_mixed_unit_converts_its_good_fields(tmp_path):
    src = generate_plate(tmp_path / "src", plate_name="MIX", rows=1, columns=2, fields=2, channels=("DNA",),
                         size=(48, 48), seed=2, ground_truth=False, workers=1)
    out = tmp_path / "mix.zarr"
    layout = discover(make_config(src, out).source)
    bad_field = layout.wells[0].fields[1]
    _break(Path(bad_field.planes["DNA"].path), "truncated")
    with pytest.raises(UnitFailures) as err:
        convert(make_config(src, out, fields_per_unit=4))
    ((_key, message),) = err.value.failures.items()
    assert "A01-1" in message and "truncated" in message
    assert done_keys(out) == {"A01-0", "A02-0", "A02-1"}


def test_existing_output_refused_resumed_or_overwritten(small_plate, tmp_path):
    out = tmp_path / "exists.zarr"
    out.mkdir()
    (out / "notes.txt").write_text("not a plate")
    with pytest.raises(OutputExistsError, match="exists.zarr"):
        convert(make_config(small_plate, out))
    assert (out / "notes.txt").read_text() == "not a plate"
    # --overwrite removes only what jumpdenoise wrote: the user's folder is kept
    with pytest.raises(UnsafeOutputError, match="did not write"):
        convert(make_config(small_plate, out, overwrite=True))
    assert (out / "notes.txt").read_text() == "not a plate"
    (out / "notes.txt").unlink()
    # a plate prepared from the same source and settings is resumed, not refused
    convert(make_config(small_plate, out, overwrite=True))
    again = convert(make_config(small_plate, out))
    assert (again.converted, again.skipped) == (0, 12)
    # other storage settings or another source: refused
    with pytest.raises(OutputExistsError, match="storage"):
        convert(make_config(small_plate, out, codec="zstd"))
    other = generate_plate(tmp_path / "other", plate_name="OTHER", rows=1, columns=1, fields=1,
                           channels=("DNA",), size=(32, 32), seed=1, ground_truth=False, workers=1)
    with pytest.raises(OutputExistsError, match="another source"):
        convert(make_config(other, out))
    convert(make_config(other, out, overwrite=True))
    assert plate_info(out).channels == ["DNA"]


def test_verify_finds_a_changed_pixel(small_plate, tmp_path):
    out = tmp_path / "verify.zarr"
    cfg = make_config(small_plate, out)
    convert(cfg)
    report = verify_plate(cfg.source, out, executor=LocalExecutor(2))
    assert report.ok and report.n_fields == 12, str(report)
    arr = zarr.open_array(out / "B" / "2" / "1" / "0", mode="r+")
    arr[1, 5, 7] = int(arr[1, 5, 7]) + 3
    report = verify_plate(cfg.source, out)
    assert len(report.differences) == 1
    assert "B02-1 ER: 1 of 5120 pixels differ" in report.differences[0]
    assert "max |difference| 3" in report.differences[0]


@pytest.mark.parametrize("layout_axes", ["CYX", "YXC"])
def test_hyperstack_folder_converts_pixel_exact(tmp_path, layout_axes):
    rng = np.random.default_rng(5)
    folder = tmp_path / "stacks"
    folder.mkdir()
    stacks = {}
    for well in ("B03", "C04"):
        for site in (1, 2):
            data = rng.integers(0, 60000, (3, 40, 56), dtype=np.uint16)
            stacks[(well, site)] = data
            arr = data if layout_axes == "CYX" else np.moveaxis(data, 0, -1)
            tifffile.imwrite(folder / f"plate_{well}_s{site}.tif", arr, compression="lzw",
                             photometric="minisblack", planarconfig="separate" if layout_axes == "CYX" else "contig")
    out = tmp_path / "stacks.zarr"
    cfg = make_config(folder, out, source_extra={
        "kind": "hyperstack", "filename_pattern": r"_(?P<well>[A-P]\d{2})_s(?P<field>\d+)\.tif$",
        "axes": layout_axes, "channel_names": ["DNA", "ER", "Mito"]})
    convert(cfg)
    validate_plate(out)
    info = plate_info(out)
    assert info.channels == ["DNA", "ER", "Mito"] and set(info.wells) == {"B03", "C04"}
    for (well, site), data in stacks.items():
        assert np.array_equal(read_field(out, well, site - 1), data), (well, site)
    assert verify_plate(cfg.source, out).ok
