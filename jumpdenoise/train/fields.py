"""Fields to sample patches from: lazy (zarr level 0) or in memory, and their split.

A :class:`FieldRef` names one 2-D field (C, Y, X) and a band of rows of it; it loads its
pixels only when a data worker asks. Plates, image folders and in-memory arrays all become
lists of :class:`FieldRef`, so one patch pipeline serves them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jumpdenoise.errors import ConfigError


@dataclass(frozen=True)
class FieldRef:
    """One field (channels x rows x columns), or a band of its rows.

    Attributes
    ----------
    key
        ``"A01-0"`` for plate fields, ``"image-3"`` for arrays.
    group
        What the split keeps together (the well for plates, the image for arrays).
    shape
        ``(c, y, x)`` of the whole field, selected channels only.
    rows
        ``(y0, y1)``: the rows patches may come from.
    array
        In-memory ``(c, y, x)`` array (arrays and folders), or ``None``.
    zarr_path, array_path, channel_index
        Where the level-0 array of a plate field is, and which channels to read.
    """

    key: str
    group: str
    shape: tuple[int, int, int]
    rows: tuple[int, int]
    array: Any = field(default=None, repr=False, compare=False)
    zarr_path: str | None = None
    array_path: str | None = None
    channel_index: tuple[int, ...] | None = None

    def with_rows(self, y0: int, y1: int) -> "FieldRef":
        """Return the same field restricted to rows ``[y0, y1)``."""
        return FieldRef(self.key, self.group, self.shape, (y0, y1), self.array,
                        self.zarr_path, self.array_path, self.channel_index)

    @property
    def n_pixels(self) -> int:
        """Pixels (per channel) patches may come from."""
        return (self.rows[1] - self.rows[0]) * self.shape[2]

    def load(self, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Read the field's selected channels and rows as a ``(c, rows, x)`` array.

        ``window``: ``(y, x, height, width)`` within those rows, read alone (a plate reads only
        the chunks it overlaps; an array in memory gives a view).
        """
        y0, y1 = self.rows
        x0, x1 = 0, self.shape[2]
        if window is not None:
            y, x, h, w = window
            if not (0 <= y and y + h <= y1 - y0 and 0 <= x and x + w <= x1 and h > 0 and w > 0):
                raise ValueError(f"window {window} outside field {self.key} rows {self.rows} x 0..{x1}")
            y0, y1, x0, x1 = y0 + y, y0 + y + h, x, x + w
        if self.array is not None:
            return self.array[:, y0:y1, x0:x1]
        import zarr

        arr = zarr.open_array(f"{self.zarr_path}/{self.array_path}", mode="r")
        idx = self.channel_index
        if idx is not None and list(idx) == list(range(idx[0], idx[-1] + 1)):
            return np.asarray(arr[idx[0]: idx[-1] + 1, y0:y1, x0:x1])
        if idx is None:
            return np.asarray(arr[:, y0:y1, x0:x1])
        return np.stack([np.asarray(arr[c, y0:y1, x0:x1]) for c in idx])


@dataclass
class Split:
    """Which fields train and which validate, and how they were chosen.

    Attributes
    ----------
    train, val
        Field references (possibly bands of rows).
    mode
        ``"well"`` (by well/image group), ``"field"`` (one group: fields held out), or
        ``"region"`` (one field: a band of rows at the bottom validates).
    record
        What ``split.json`` holds.
    """

    train: list[FieldRef]
    val: list[FieldRef]
    mode: str
    record: dict


def split_fields(refs: list[FieldRef], *, seed: int, val_fraction: float, patch_size: int,
                 val_groups: list[str] | None = None, val_refs: list[FieldRef] | None = None) -> Split:
    """Split fields into training and validation, never putting one field on both sides.

    Parameters
    ----------
    refs
        All fields selected for training.
    seed
        Seed of the random choice of validation groups.
    val_fraction
        Fraction of groups (at least one) held out.
    patch_size
        Patch side; a row band must hold at least one patch.
    val_groups
        Groups (wells) to hold out, instead of a random choice.
    val_refs
        Separate validation fields (then ``refs`` all train).

    Returns
    -------
    Split
    """
    if val_refs:
        return Split(refs, val_refs, "given", {
            "seed": seed, "mode": "given", "train_wells": sorted({r.group for r in refs}),
            "val_wells": sorted({r.group for r in val_refs}),
            "train_fields": [r.key for r in refs], "val_fields": [r.key for r in val_refs]})
    groups = sorted({r.group for r in refs})
    rng = np.random.default_rng(seed)
    if val_groups is not None or len(groups) >= 2:
        if val_groups is None:
            n_val = min(len(groups) - 1, max(1, round(val_fraction * len(groups))))
            val_groups = sorted(rng.choice(groups, size=n_val, replace=False).tolist())
        unknown = [g for g in val_groups if g not in groups]
        if unknown:
            raise ConfigError(f"train.val_wells: {unknown} are not among the training wells {groups}")
        if set(val_groups) == set(groups):
            raise ConfigError(f"train.val_wells: {val_groups} leaves no well to train on")
        train = [r for r in refs if r.group not in val_groups]
        val = [r for r in refs if r.group in val_groups]
        mode = "well"
    elif len(refs) >= 2:
        n_val = min(len(refs) - 1, max(1, round(val_fraction * len(refs))))
        pick = set(rng.choice(len(refs), size=n_val, replace=False).tolist())
        train = [r for i, r in enumerate(refs) if i not in pick]
        val = [r for i, r in enumerate(refs) if i in pick]
        mode = "field"
    else:
        (ref,) = refs
        y0, y1 = ref.rows
        band = max(patch_size, int(math.ceil((y1 - y0) * val_fraction)))
        if (y1 - y0) - band < patch_size:
            raise ConfigError(
                f"train.patch_size {patch_size}: field {ref.key} has {y1 - y0} rows, too few for a "
                f"training band and a validation band of {patch_size} rows each; use a smaller patch "
                f"or more fields/wells")
        train = [ref.with_rows(y0, y1 - band)]
        val = [ref.with_rows(y1 - band, y1)]
        mode = "region"
    record = {
        "seed": seed, "mode": mode,
        "train_wells": sorted({r.group for r in train}), "val_wells": sorted({r.group for r in val}),
        "train_fields": [r.key for r in train], "val_fields": [r.key for r in val],
    }
    if mode == "region":
        record["train_rows"] = list(train[0].rows)
        record["val_rows"] = list(val[0].rows)
    return Split(train, val, mode, record)


def check_patch_fits(refs: list[FieldRef], patch_size: int, origin: str, phase_split: int = 1) -> None:
    """Raise :class:`ConfigError` when a patch is larger than a field (or row band).

    With ``phase_split`` ``s``, a patch is cut from a phase sub-image and spans ``s * patch_size`` pixels.
    """
    span = patch_size * phase_split
    for r in refs:
        h, w = r.rows[1] - r.rows[0], r.shape[2]
        if span > min(h, w):
            split = f" with phase split {phase_split} (train.n2v.phase_split) spans {span} pixels and" \
                if phase_split > 1 else ""
            raise ConfigError(
                f"train.patch_size {patch_size}{split} is larger than the fields of {origin} "
                f"({r.key}: {h}x{w} pixels); choose a patch_size <= {min(h, w) // phase_split}")


def arrays_to_refs(images: list[np.ndarray], prefix: str = "image") -> list[FieldRef]:
    """Wrap ``(c, y, x)`` arrays as field references (each image is its own group)."""
    refs = []
    for i, img in enumerate(images):
        key = f"{prefix}-{i}"
        refs.append(FieldRef(key, key, tuple(int(s) for s in img.shape), (0, int(img.shape[1])), array=img))
    return refs
