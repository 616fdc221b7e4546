"""Mergeable per-channel statistics against numpy."""

from __future__ import annotations

import io

import numpy as np
import pytest

from jumpdenoise.compute.stats import (
    PERCENTILES,
    ChannelStats,
    field_partial,
    merge_partials,
)

QS = [0, 0.1, 1, 25, 37.3, 50, 99, 99.9, 100]


@pytest.mark.parametrize("dtype", ["uint16", "uint8", "int16"])
def test_integer_statistics_equal_numpy(dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    data = rng.integers(info.min // 2, info.max // 2, size=(257, 311), endpoint=True).astype(dtype)
    st = ChannelStats(dtype).update(data)
    assert st.count == data.size
    assert st.min == data.min() and st.max == data.max()
    assert st.mean == pytest.approx(data.mean(dtype=np.float64), rel=1e-13)
    assert st.std == pytest.approx(data.std(dtype=np.float64), rel=1e-12)
    np.testing.assert_allclose(st.percentiles(QS), np.percentile(data, QS), rtol=1e-12, atol=0)


def test_uint16_percentiles_exact_on_skewed_data():
    rng = np.random.default_rng(1)
    data = rng.poisson(300, size=(3, 200, 200)).astype(np.uint16)
    data[0, :5, :5] = 65535  # a few saturated pixels
    st = ChannelStats("uint16").update(data)
    ours, ref = st.percentiles(QS), np.percentile(data, QS)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    # order statistics themselves (the interpolation's ends) are exact integers
    assert st.percentiles([0, 50, 100]).tolist() == [data.min(), np.percentile(data, 50), 65535]


def test_merge_of_parts_equals_whole():
    rng = np.random.default_rng(2)
    data = rng.integers(0, 5000, size=(10, 64, 64), dtype=np.uint16)
    whole = ChannelStats("uint16").update(data)
    parts = [ChannelStats("uint16").update(p) for p in data]
    merged = ChannelStats("uint16")
    for p in parts[::-1]:
        merged.merge(p)
    assert np.array_equal(merged.hist, whole.hist)
    assert merged.count == whole.count and merged.min == whole.min and merged.max == whole.max
    assert merged.mean == pytest.approx(whole.mean, rel=1e-14)
    assert merged.std == pytest.approx(data.std(dtype=np.float64), rel=1e-12)
    np.testing.assert_array_equal(merged.percentiles(QS), whole.percentiles(QS))


def test_arrays_round_trip_through_npz():
    rng = np.random.default_rng(3)
    st = ChannelStats("uint16").update(rng.integers(1000, 1200, size=(50, 50), dtype=np.uint16))
    arrays = st.to_arrays()
    assert arrays["hist_bins"].size == arrays["hist_counts"].size <= 200  # non-empty bins only
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz:
        back = ChannelStats.from_arrays({k: npz[k] for k in npz.files})
    assert back.summary() == st.summary()
    assert np.array_equal(back.hist, st.hist)


def test_float_statistics_within_documented_error():
    rng = np.random.default_rng(4)
    data = rng.normal(100.0, 15.0, size=(300, 300)).astype(np.float32)
    data[0, 0] = np.nan  # skipped
    finite = data[np.isfinite(data)]
    st = ChannelStats("float32").update(data)
    assert st.count == finite.size
    assert st.mean == pytest.approx(finite.mean(dtype=np.float64), rel=1e-12)
    assert st.std == pytest.approx(finite.std(dtype=np.float64), rel=1e-9)
    np.testing.assert_allclose(st.percentiles(QS), np.percentile(finite, QS), rtol=2**-8)
    ranged = ChannelStats("float32", value_range=(0.0, 200.0)).update(data)
    np.testing.assert_allclose(ranged.percentiles(QS[1:-1]), np.percentile(finite, QS[1:-1]), atol=200 / 65536 * 1.01)


def test_merge_of_different_kinds_is_refused():
    with pytest.raises(ValueError, match="cannot merge"):
        ChannelStats("uint16").merge(ChannelStats("float32"))


def test_field_partials_merge_into_plate_and_well_summaries():
    rng = np.random.default_rng(5)
    channels = ["DNA", "Mito"]
    fields = {f"{w}-{f}": rng.integers(0, 3000 + 1000 * i, size=(2, 40, 30), dtype=np.uint16)
              for i, w in enumerate(["A01", "B03"]) for f in range(3)}
    partials = {k: field_partial(v, channels) for k, v in fields.items()}
    stats = merge_partials(partials, channels)
    assert stats["version"] == 1 and stats["percentiles"] == list(PERCENTILES)
    assert set(stats["wells"]) == {"A01", "B03"}
    everything = np.stack(list(fields.values()))
    for ci, ch in enumerate(channels):
        plate = stats["plate"][ch]
        values = everything[:, ci]
        assert plate["count"] == values.size
        assert plate["min"] == values.min() and plate["max"] == values.max()
        assert plate["mean"] == pytest.approx(values.mean(dtype=np.float64), rel=1e-13)
        assert plate["std"] == pytest.approx(values.std(dtype=np.float64), rel=1e-12)
        for q in PERCENTILES:
            assert plate[f"p{q:g}"] == pytest.approx(np.percentile(values, q), rel=1e-12)
        well = np.stack([v[ci] for k, v in fields.items() if k.startswith("B03")])
        assert stats["wells"]["B03"][ch]["p50"] == pytest.approx(np.percentile(well, 50), rel=1e-12)
        assert stats["wells"]["B03"][ch]["max"] == well.max()


def test_field_partial_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="3 channels"):
        field_partial(np.zeros((2, 4, 4), np.uint16), ["a", "b", "c"])


def test_all_nan_channel_gives_json_safe_summary():
    import json

    st = ChannelStats("float32").update(np.full((4, 4), np.nan, np.float32))
    summary = st.summary()
    assert summary["count"] == 0 and summary["mean"] is None and summary["p50"] is None
    json.dumps(summary, allow_nan=False)


def test_float_keys_match_the_32_bit_formulation_and_keep_order() -> None:
    from jumpdenoise.compute.stats import _float_keys

    rng = np.random.default_rng(11)
    special = np.array([-np.inf, -3.4e38, -1.0, -1e-40, -0.0, 0.0, 1e-40, 1.0, 3.4e38, np.inf], np.float32)
    values = np.concatenate([special, rng.normal(0, 1e3, 5000).astype(np.float32)])
    bits = values.view(np.uint32)
    want = (np.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000)) >> 16).astype(np.uint16)
    got = _float_keys(values[None, :].repeat(2, 0)[:, ::1][0])  # any layout of float32 input
    assert got.dtype == np.uint16 and np.array_equal(got, want)
    assert np.array_equal(_float_keys(values.astype(np.float64)), want)
    ordered = np.sort(values)
    assert (np.diff(_float_keys(ordered).astype(np.int64)) >= 0).all()
