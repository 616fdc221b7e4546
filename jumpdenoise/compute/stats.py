"""Mergeable per-channel statistics: count, min, max, mean, M2 (Chan et al.) and a histogram.

Partial statistics of fields are computed where the pixels already are (conversion,
prediction), stored in completion markers, and merged once per plate. Merging is exact for
count/min/max/histogram and numerically stable for mean/variance (Chan's parallel update).

Histograms (65536 bins at most):

``"int"``
    Integer data of 8 or 16 bits: one bin per possible value, so percentiles are exact
    and equal to ``numpy.percentile(data, q)`` (method ``"linear"``, numpy's default).
``"float"``
    Any other dtype, without a known range: the bin of a value is the top 16 bits of its
    float32 bit pattern, ordered like the values (a bfloat16-like key). No range is
    needed and partials always merge; a percentile is the middle of its bin clipped to
    [min, max], within a relative error of 2**-8.
``"range"``
    Float data with an explicit ``value_range=(lo, hi)``: 65536 equal bins over [lo, hi]
    (values outside go to the end bins); a percentile is the middle of its bin.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np

PERCENTILES: tuple[float, ...] = (0.1, 1, 50, 99, 99.9)
STATS_VERSION = 1
NBINS = 65536
_SCHEMES = ("int", "float", "range")


def percentile_key(q: float) -> str:
    """Summary key of percentile ``q``: ``0.1 -> "p0.1"``, ``50 -> "p50"``."""
    return f"p{q:g}"


def _float_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving 16-bit keys of float values (top bits of the float32 pattern).

    Works on the high 16-bit half of each float32 only: ``hi | 0x8000`` for a positive
    sign bit, ``~hi`` for a negative one, i.e. ``hi ^ (0x8000 | sign * 0x7FFF)`` (three
    in-place passes over 16-bit data, a third of the cost of the 32-bit formulation).
    """
    halves = np.ascontiguousarray(values, dtype=np.float32).reshape(-1).view(np.uint16)
    hi = np.ascontiguousarray(halves[1::2] if sys.byteorder == "little" else halves[0::2])
    keys = hi >> 15
    keys *= np.uint16(0x7FFF)
    keys |= np.uint16(0x8000)
    keys ^= hi
    return keys


def _float_of_keys(keys: np.ndarray) -> np.ndarray:
    """Middle value of each float key bin (inverse of :func:`_float_keys`)."""
    k = (keys.astype(np.uint32) << 16) | np.uint32(0x8000)
    neg = (k >> 31) == 0
    bits = np.where(neg, ~k, k & np.uint32(0x7FFFFFFF))
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


class ChannelStats:
    """Mergeable statistics of one channel.

    Parameters
    ----------
    dtype
        dtype of the data (decides the histogram scheme, see the module docstring).
    value_range
        ``(lo, hi)`` for a linear histogram of float data; ignored for 8/16-bit integers.
    """

    def __init__(self, dtype: str | np.dtype, value_range: tuple[float, float] | None = None) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype.kind in "ui" and self.dtype.itemsize <= 2:
            self.scheme = "int"
            self.offset = int(np.iinfo(self.dtype).min)
            self.nbins = 1 << (8 * self.dtype.itemsize)
            self.value_range: tuple[float, float] | None = None
        elif value_range is not None:
            lo, hi = (float(v) for v in value_range)
            if not hi > lo:
                raise ValueError(f"value_range must have hi > lo, got {value_range}")
            self.scheme, self.offset, self.nbins, self.value_range = "range", 0, NBINS, (lo, hi)
        else:
            self.scheme, self.offset, self.nbins, self.value_range = "float", 0, NBINS, None
        self.count = 0
        self.min = np.inf
        self.max = -np.inf
        self.mean = 0.0
        self.m2 = 0.0
        self.hist = np.zeros(self.nbins, dtype=np.int64)

    # ------------------------------------------------------------------ accumulate
    def _bins(self, flat: np.ndarray) -> np.ndarray:
        if self.scheme == "int":
            if self.offset:  # signed: flip the sign bit to get an order-preserving unsigned key
                unsigned = np.dtype(f"u{self.dtype.itemsize}")
                return flat.view(unsigned) ^ unsigned.type(1 << (8 * self.dtype.itemsize - 1))
            return flat
        if self.scheme == "float":
            return _float_keys(flat)
        lo, hi = self.value_range  # type: ignore[misc]
        idx = np.floor((flat.astype(np.float64) - lo) * (self.nbins / (hi - lo)))
        return np.clip(idx, 0, self.nbins - 1).astype(np.intp)

    def _bin_values(self, bins: np.ndarray) -> np.ndarray:
        """Value represented by each bin (exact for the ``"int"`` scheme)."""
        if self.scheme == "int":
            return bins.astype(np.float64) + self.offset
        if self.scheme == "float":
            return _float_of_keys(bins)
        lo, hi = self.value_range  # type: ignore[misc]
        return lo + (bins.astype(np.float64) + 0.5) * ((hi - lo) / self.nbins)

    def update(self, plane: np.ndarray) -> "ChannelStats":
        """Add the pixels of ``plane`` (any shape; NaN and inf are skipped for floats)."""
        flat = np.asarray(plane, dtype=self.dtype).ravel()
        if flat.size == 0:
            return self
        if self.dtype.kind == "f":
            lo, hi = float(flat.min()), float(flat.max())
            if not (np.isfinite(lo) and np.isfinite(hi)):  # finite min and max: no NaN (it propagates), no inf
                flat = flat[np.isfinite(flat)]
                if flat.size == 0:
                    return self
                lo, hi = float(flat.min()), float(flat.max())
        hist = np.bincount(self._bins(flat), minlength=self.nbins)
        n = int(flat.size)
        if self.scheme == "int":  # moments from the histogram: no second pass over the pixels
            mean, m2, lo, hi = _int_moments(hist, self.offset, n)
        else:
            if self.dtype.kind != "f":  # e.g. 32-bit integers (float keys)
                lo, hi = float(flat.min()), float(flat.max())
            data = flat.astype(np.float64)
            mean = float(data.mean())
            data -= mean
            m2 = float(np.einsum("i,i->", data, data))  # one pass, no temporaries, no BLAS threads
        self.hist += hist
        self._add_moments(n, mean, m2, lo, hi)
        return self

    def _add_moments(self, count: int, mean: float, m2: float, lo: float, hi: float) -> None:
        """Chan et al.'s parallel update of count, mean and M2; min and max."""
        if count == 0:
            return
        n = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * count / n
        self.m2 = self.m2 + m2 + delta * delta * self.count * count / n
        self.count = n
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def _check_compatible(self, dtype: np.dtype, scheme: str, value_range) -> None:
        if (np.dtype(dtype), scheme, value_range) != (self.dtype, self.scheme, self.value_range):
            raise ValueError(f"cannot merge statistics of {np.dtype(dtype)}/{scheme} with "
                             f"{self.dtype}/{self.scheme}")

    def merge(self, other: "ChannelStats") -> "ChannelStats":
        """Add ``other``'s statistics to this one (in place; returns ``self``)."""
        self._check_compatible(other.dtype, other.scheme, other.value_range)
        self.hist += other.hist
        self._add_moments(other.count, other.mean, other.m2, other.min, other.max)
        return self

    def merge_arrays(self, arrays: Mapping[str, np.ndarray]) -> "ChannelStats":
        """Merge statistics stored by :meth:`to_arrays` (fast: adds the sparse histogram in
        place, no intermediate full histogram is built)."""
        vr = np.asarray(arrays["value_range"])
        self._check_compatible(str(arrays["dtype"]), str(arrays["scheme"]), tuple(vr.tolist()) if vr.size else None)
        self.hist[np.asarray(arrays["hist_bins"], dtype=np.intp)] += np.asarray(arrays["hist_counts"])
        _, lo, hi, mean, m2 = (float(v) for v in arrays["moments"])
        self._add_moments(int(arrays["count"]), mean, m2, lo, hi)
        return self

    # ------------------------------------------------------------------ results
    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0, like ``numpy.std``)."""
        return float(np.sqrt(self.m2 / self.count)) if self.count else float("nan")

    def _order_statistics(self, ranks: np.ndarray) -> np.ndarray:
        bins = np.searchsorted(np.cumsum(self.hist), ranks, side="right")
        return np.clip(self._bin_values(bins), self.min, self.max)

    def percentiles(self, qs: Sequence[float] = PERCENTILES) -> np.ndarray:
        """Percentiles ``qs`` (0-100), computed like ``numpy.percentile(method="linear")``."""
        if self.count == 0:
            return np.full(len(qs), np.nan)
        q = np.true_divide(np.asarray(qs, dtype=np.float64), 100)
        n = self.count
        virtual = n * q + (1 + q * (1 - 1 - 1)) - 1  # numpy's _compute_virtual_index(n, q, 1, 1)
        below = np.clip(np.floor(virtual), 0, n - 1).astype(np.int64)
        above = np.clip(below + 1, 0, n - 1)
        t = virtual - below
        both = self._order_statistics(np.concatenate([below, above]))  # one cumulative sum
        a, b = both[:len(below)], both[len(below):]
        diff = b - a
        return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)  # numpy's _lerp

    def summary(self, percentiles: Sequence[float] = PERCENTILES) -> dict:
        """``{"count", "min", "max", "mean", "std", "p0.1", ...}`` as plain Python numbers
        (``None`` where undefined, e.g. no finite pixel: the result is valid JSON)."""
        out: dict = {"count": int(self.count), "min": _num(self.min), "max": _num(self.max),
                     "mean": _float(self.mean if self.count else np.nan), "std": _float(self.std)}
        for q, v in zip(percentiles, self.percentiles(percentiles)):
            out[percentile_key(q)] = _float(v)
        return out

    # ------------------------------------------------------------------ (de)serialise
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for an ``.npz`` marker; the histogram is stored sparse (non-empty bins only)."""
        bins = np.flatnonzero(self.hist > 0)  # counts are >= 0; faster than on ints
        return {
            "dtype": np.array(self.dtype.str), "scheme": np.array(self.scheme),
            "value_range": np.array(self.value_range or (), dtype=np.float64),
            "moments": np.array([self.count, self.min, self.max, self.mean, self.m2], dtype=np.float64),
            "count": np.array(self.count, dtype=np.int64),
            "hist_bins": bins.astype(np.uint32), "hist_counts": self.hist[bins],
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "ChannelStats":
        """Rebuild statistics written by :meth:`to_arrays`."""
        vr = np.asarray(arrays["value_range"])
        return cls(str(arrays["dtype"]), tuple(vr.tolist()) if vr.size else None).merge_arrays(arrays)


def _int_moments(hist: np.ndarray, offset: int, n: int) -> tuple[float, float, float, float]:
    """Mean, M2, min and max of integer data from its one-bin-per-value histogram.

    The sums are exact integers (int64, then Python ints), so mean and M2 are correctly
    rounded and deterministic. ``np.dot`` is avoided on purpose: on float vectors of more
    than ~10,000 bins it goes to a multi-threaded BLAS, which costs milliseconds per plane
    on a loaded machine.
    """
    nz = np.flatnonzero(hist > 0)
    values = nz.astype(np.int64) + offset
    counts = hist[nz]
    lo, hi = int(values[0]), int(values[-1])
    peak = max(abs(lo), abs(hi))
    if n * peak * peak < 2**62:  # no int64 overflow in the sums below
        s1 = int(np.sum(counts * values))
        s2 = int(np.sum(counts * values * values))
        return s1 / n, (n * s2 - s1 * s1) / n, float(lo), float(hi)
    fv, fc = values.astype(np.float64), counts.astype(np.float64)
    mean = float(np.sum(fc * fv)) / n
    return mean, float(np.sum(fc * (fv - mean) ** 2)), float(lo), float(hi)


def _float(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _num(v: float) -> float | int | None:
    if not np.isfinite(v):
        return None
    return int(v) if float(v).is_integer() else float(v)


# ----------------------------------------------------------------------------- many channels


def field_partial(data: np.ndarray, channels: Sequence[str],
                  value_range: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
    """Partial statistics of one field ``(c, y, x)``: what a unit stores in its done marker."""
    if data.ndim < 1 or data.shape[0] != len(channels):
        raise ValueError(f"field of shape {data.shape} does not have {len(channels)} channels {list(channels)}")
    stats = {ch: ChannelStats(data.dtype, value_range).update(data[i]) for i, ch in enumerate(channels)}
    return stats_to_partial(stats)


def stats_to_partial(stats: Mapping[str, ChannelStats]) -> dict[str, np.ndarray]:
    """Flatten per-channel statistics into one dict of arrays (keys ``c<i>.<name>``)."""
    out: dict[str, np.ndarray] = {"channels": np.array(list(stats))}
    for i, st in enumerate(stats.values()):
        out.update({f"c{i}.{k}": v for k, v in st.to_arrays().items()})
    return out


def merge_stats(items: Sequence[Mapping[str, ChannelStats]], channels: Sequence[str]) -> dict[str, ChannelStats]:
    """Merge several per-channel statistics into new objects (inputs are not modified)."""
    out: dict[str, ChannelStats] = {}
    for item in items:
        for ch in channels:
            if ch not in item:
                raise ValueError(f"partial statistics lack channel {ch!r} (have {list(item)})")
            if ch not in out:
                out[ch] = ChannelStats(item[ch].dtype, item[ch].value_range)
            out[ch].merge(item[ch])
    return out


def well_of_key(key: str) -> str:
    """Well of a marker key: ``"A01-3" -> "A01"``, ``"A01" -> "A01"``."""
    return key.split("-", 1)[0]


def merge_partials(partials: Mapping[str, Mapping[str, np.ndarray]], channels: Sequence[str],
                   percentiles: Sequence[float] = PERCENTILES) -> dict:
    """Merge field (``"A01-0"``) or well (``"A01"``) partials into plate and per-well summaries.

    Keys are visited in sorted order and each well is summarised as soon as its partials
    are merged, so memory holds two accumulators whatever the plate size; ``partials`` may
    be a lazy mapping that loads each payload in ``__getitem__`` (e.g. from markers).

    Returns
    -------
    dict
        ``{"version", "percentiles", "dtype", "histogram", "plate": {channel: summary},
        "wells": {well: {channel: summary}}}`` (see ``docs/FORMATS.md``).
    """
    from itertools import groupby

    if not partials:
        raise ValueError("no partial statistics to merge")
    wells: dict[str, dict] = {}
    plate: dict[str, ChannelStats] = {}
    for well, keys in groupby(sorted(partials), key=well_of_key):
        acc: dict[str, ChannelStats] = {}
        for key in keys:
            payload = partials[key]
            names = [str(c) for c in np.atleast_1d(payload["channels"])]
            for ch in channels:
                if ch not in names:
                    raise ValueError(f"partial statistics {key} lack channel {ch!r} (have {names})")
                prefix = f"c{names.index(ch)}."
                arrays = {k[len(prefix):]: v for k, v in payload.items() if k.startswith(prefix)}
                if ch not in acc:
                    vr = np.asarray(arrays["value_range"])
                    acc[ch] = ChannelStats(str(arrays["dtype"]), tuple(vr.tolist()) if vr.size else None)
                acc[ch].merge_arrays(arrays)
        wells[well] = {ch: acc[ch].summary(percentiles) for ch in channels}
        for ch in channels:
            plate.setdefault(ch, ChannelStats(acc[ch].dtype, acc[ch].value_range)).merge(acc[ch])
    first = plate[channels[0]]
    return {
        "version": STATS_VERSION,
        "percentiles": [float(q) for q in percentiles],
        "dtype": first.dtype.name,
        "histogram": first.scheme,
        "plate": {ch: plate[ch].summary(percentiles) for ch in channels},
        "wells": wells,
    }
