"""Compare per-object features and segmentations of the versions of a plate.

All versions share the reference masks (truth, else raw), so row ``i`` of every version is
the same object and features can be compared object by object:

- per feature: Pearson correlation, over objects, of a version's values with the
  reference's, and the median relative shift ``median(version - reference) / median(|reference|)``;
- per family: the median of those over the family's features;
- per well: the profile (median over the well's objects of each feature) and, per version,
  the distance of its profile to the reference profile: the median over features of the
  absolute difference divided by the feature's spread (standard deviation over the
  reference's objects), i.e. how many standard deviations a typical feature moved (robust
  to the few features whose reference spread is tiny);
- segmentation: each version's own masks matched to the reference's (F1 at the IoU threshold).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jumpdenoise.evaluate.features import feature_family

KEYS = ["version", "well", "field", "object", "label"]
MIN_OBJECTS = 3


def feature_columns(table: pd.DataFrame) -> list[str]:
    """The feature columns of a features table."""
    return [c for c in table.columns if c not in KEYS]


def aligned(table: pd.DataFrame, version: str, reference: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``version`` and ``reference`` for the same objects, in the same order."""
    index = ["well", "field", "object", "label"]
    a = table[table.version == version].set_index(index).sort_index()
    b = table[table.version == reference].set_index(index).sort_index()
    common = a.index.intersection(b.index)
    return a.loc[common, feature_columns(table)], b.loc[common, feature_columns(table)]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < MIN_OBJECTS:
        return float("nan")
    x, y = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else float("nan")


def _shift(x: np.ndarray, ref: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(ref)
    if not ok.any():
        return float("nan")
    scale = float(np.median(np.abs(ref[ok])))
    return float(np.median(x[ok] - ref[ok]) / scale) if scale > 0 else float("nan")


def feature_channel(column: str) -> str:
    """Channel(s) of a feature column: ``"DNA"``, ``"DNA/ER"`` (correlations) or ``""`` (shape)."""
    parts = column.split("__")
    return "/".join(parts[1:])


def feature_agreement(table: pd.DataFrame, versions: list[str], reference: str) -> pd.DataFrame:
    """One row per (version, object, feature).

    Columns: ``family``, ``channel``, ``pearson_r``, ``median_rel_shift``, ``n_objects``.
    """
    rows = []
    for version in versions:
        for obj in sorted(table.object.unique()):
            sub = table[table.object == obj]
            a, b = aligned(sub, version, reference)
            for col in a.columns:
                x, y = a[col].to_numpy(float), b[col].to_numpy(float)
                rows.append({"version": version, "object": obj, "feature": col, "family": feature_family(col),
                             "channel": feature_channel(col),
                             "pearson_r": _pearson(x, y), "median_rel_shift": _shift(x, y),
                             "n_objects": len(x)})
    return pd.DataFrame(rows)


def family_summary(agreement: pd.DataFrame) -> pd.DataFrame:
    """Per (version, family): median correlation and median |relative shift| over its features."""
    grouped = agreement.assign(abs_shift=agreement.median_rel_shift.abs()).groupby(["version", "family"])
    out = grouped.agg(median_r=("pearson_r", "median"), median_abs_shift=("abs_shift", "median"),
                      n_features=("feature", "size"), n_undefined=("pearson_r", lambda s: int(s.isna().sum())))
    return out.reset_index()


def channel_summary(agreement: pd.DataFrame) -> pd.DataFrame:
    """Per (version, channel): median correlation over the single-channel features of that channel."""
    single = agreement[(agreement.channel != "") & ~agreement.channel.str.contains("/")]
    out = single.groupby(["version", "channel"]).agg(median_r=("pearson_r", "median"), n_features=("feature", "size"))
    return out.reset_index()


def profiles(table: pd.DataFrame) -> pd.DataFrame:
    """Per (version, well) profile: the median of each feature over the well's objects, per object type.

    Columns are ``<object>/<feature>``.
    """
    cols = feature_columns(table)
    med = table.groupby(["version", "well", "object"])[cols].median()
    wide = med.unstack("object")
    wide.columns = [f"{obj}/{feat}" for feat, obj in wide.columns]
    return wide.sort_index(axis=1)


def feature_spread(table: pd.DataFrame, reference: str) -> pd.Series:
    """Standard deviation of each ``<object>/<feature>`` over the reference's objects."""
    cols = feature_columns(table)
    ref = table[table.version == reference]
    spread = ref.groupby("object")[cols].std()
    return pd.Series({f"{obj}/{feat}": spread.loc[obj, feat] for obj in spread.index for feat in cols})


def profile_distances(prof: pd.DataFrame, spread: pd.Series, versions: list[str], reference: str) -> pd.DataFrame:
    """Per (version, well): median over features of ``|profile - reference profile| / spread``."""
    usable = [c for c in prof.columns if np.isfinite(spread.get(c, np.nan)) and spread[c] > 0]
    ref = prof.xs(reference, level="version")[usable]
    rows = []
    for version in versions:
        mine = prof.xs(version, level="version")[usable]
        for well in mine.index.intersection(ref.index):
            z = ((mine.loc[well] - ref.loc[well]) / spread[usable]).to_numpy(float)
            z = z[np.isfinite(z)]
            rows.append({"version": version, "well": well, "reference": reference,
                         "distance": float(np.median(np.abs(z))) if z.size else float("nan"),
                         "n_features": int(z.size)})
    return pd.DataFrame(rows)


def segmentation_summary(records: list[dict]) -> pd.DataFrame:
    """Per (version, object): summed counts, F1 at the IoU threshold and the object count ratio."""
    if not records:
        return pd.DataFrame(columns=["version", "object", "reference", "n_reference", "n_predicted", "matched",
                                     "f1", "count_ratio"])
    frame = pd.DataFrame(records)
    out = frame.groupby(["version", "object", "reference"])[["n_reference", "n_predicted", "matched"]].sum()
    out = out.reset_index()
    total = out.n_reference + out.n_predicted
    out["f1"] = np.where(total > 0, 2 * out.matched / total.where(total > 0, 1), np.nan)
    out["count_ratio"] = out.n_predicted / out.n_reference.where(out.n_reference > 0)
    return out
