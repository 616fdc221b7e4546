"""Patch streams for N2V: lazy, seeded per rank and worker, batched in numpy.

:class:`PatchStream` yields whole batches (``batch_size`` x C x P x P float32, normalised
and augmented) from a bounded cache of field regions per data worker (:data:`REGIONS_IN_CACHE`
regions of :data:`REGION_SIDE`, one replaced at a time; fields already in memory are all drawn
from whole, :func:`regions_in_cache`): memory depends on the cache size, never on the plate size. Every (global seed, rank, worker, epoch)
draws its own patches. :func:`val_patches` is a fixed, seeded set of validation patches.
With a ``masking`` transform (:class:`~jumpdenoise.train.masking.LoaderMasking`, CAREamics'
masking on the CPU), batches leave the workers masked, as ``(original, index, values)``
(:meth:`~jumpdenoise.train.masking.LoaderMasking.sparse`; the module rebuilds the masked
batch and the mask on its device), each batch's masks seeded from the worker's generator;
without one, the training module masks on its device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.utils.data

from jumpdenoise.train.fields import FieldRef

#: Regions of plate fields each data worker keeps in memory (fields already in memory are all used whole).
REGIONS_IN_CACHE = 64
#: Side of a cached region; a field (or band of rows) smaller than that is cached whole.
REGION_SIDE = 512
#: Patches a cached region serves before another region replaces it.
PATCHES_PER_REGION = 64


def regions_in_cache(refs: Sequence[FieldRef]) -> int:
    """Cache slots a worker draws each batch from: every field when they are in memory, else :data:`REGIONS_IN_CACHE`.

    The more fields every batch mixes, the closer training comes to drawing from the whole
    training set, as CAREamics does from its in-memory arrays (whether that closes the gap in
    validation loss at equal steps is not settled: README, "Training parity"). Fields in memory
    cost nothing to keep. A plate's
    fields are cached as regions of :data:`REGION_SIDE`, so that the cache holds 4 times as many
    fields of 1024^2 as whole fields would in the same memory (512^2 x 5 channels of uint16:
    2.6 MB a region, 168 MB a worker), for the same reads: a region serves as many patches as
    a whole field did before it is replaced, and a plate chunked finer than its fields is read
    only where the region lies.
    """
    if refs and all(r.array is not None for r in refs):
        return len(refs)
    return REGIONS_IN_CACHE


def _weights(refs: Sequence[FieldRef]) -> np.ndarray:
    area = np.array([r.n_pixels for r in refs], dtype=np.float64)
    return area / area.sum()


def augment_batch(batch: np.ndarray, augmentations: Sequence[dict], rng: np.random.Generator) -> np.ndarray:
    """Apply CAREamics' XYFlip / XYRandomRotate90 transforms to a batch, sample by sample.

    ``XYFlip``: with probability ``p`` flip one of the allowed axes (chosen at random).
    ``XYRandomRotate90``: with probability ``p`` rotate by k x 90 degrees, k in {1, 2, 3}.
    The two are drawn independently, so every one of the 8 symmetries of the square occurs.
    (In CAREamics 0.3.5 both transforms get the configuration's seed, so their generators run
    in step: a patch is flipped exactly when it is rotated, half the patches are left as they
    are and a pure rotation never occurs.) Patches are square, so shapes never change.

    Parameters
    ----------
    batch
        ``(b, c, y, x)`` array, modified and returned.
    augmentations
        Dicts with ``name`` and the CAREamics parameters.
    rng
        Random generator.
    """
    b = batch.shape[0]
    for aug in augmentations:
        apply = rng.random(b) < aug.get("p", 0.5)
        if aug["name"] == "XYFlip":
            axes = ([-2] if aug.get("flip_y", True) else []) + ([-1] if aug.get("flip_x", True) else [])
            which = rng.integers(0, len(axes), size=b)
            for j, axis in enumerate(axes):
                idx = np.flatnonzero(apply & (which == j))
                if idx.size:
                    batch[idx] = np.flip(batch[idx], axis=axis)
        elif aug["name"] == "XYRandomRotate90":
            k = rng.integers(1, 4, size=b)
            for kk in (1, 2, 3):
                idx = np.flatnonzero(apply & (k == kk))
                if idx.size:
                    batch[idx] = np.rot90(batch[idx], k=kk, axes=(-2, -1))
        else:  # pragma: no cover - the config only allows the two above
            raise ValueError(f"unknown augmentation {aug['name']!r}")
    return batch


def sample_patches(slots: Sequence[np.ndarray], n: int, patch: int, rng: np.random.Generator,
                   out: np.ndarray | None = None, weights: np.ndarray | None = None,
                   phase_split: int = 1) -> np.ndarray:
    """Cut ``n`` random ``patch x patch`` windows from the arrays in ``slots`` (float32).

    Each window picks its array with probability ``weights`` (``None``: uniformly). With
    ``phase_split`` ``s`` > 1, a window of ``s * patch`` pixels is cut and one of its ``s x s``
    phase sub-images (every ``s``-th pixel, from a random offset) kept: a patch of a phase
    sub-image of the array.
    """
    c = slots[0].shape[0]
    if out is None:
        out = np.empty((n, c, patch, patch), dtype=np.float32)
    which = rng.integers(0, len(slots), size=n) if weights is None else rng.choice(len(slots), size=n, p=weights)
    s = phase_split
    span = patch * s
    for i in range(n):
        arr = slots[which[i]]
        y = int(rng.integers(0, arr.shape[1] - span + 1))
        x = int(rng.integers(0, arr.shape[2] - span + 1))
        if s == 1:
            out[i] = arr[:, y: y + patch, x: x + patch]
        else:
            py, px = (int(v) for v in rng.integers(0, s, size=2))
            out[i] = arr[:, y + py: y + span: s, x + px: x + span: s]
    return out


class PatchStream(torch.utils.data.IterableDataset):
    """Iterable of training batches (a ``torch.utils.data.IterableDataset``).

    Parameters
    ----------
    refs
        Training fields.
    mean, std
        Per-channel normalisation (computed once, shared by every rank).
    patch_size, batch_size
        Patch side and patches per batch.
    batches_per_epoch
        Batches this rank yields per epoch (shared among its workers).
    seed, rank
        Global seed and global rank; with the worker id and epoch they seed the sampler.
    augmentations
        CAREamics augmentation dicts (see :func:`augment_batch`).
    regions_in_cache, patches_per_region, region_side
        Cached regions per worker, the patches each serves before it is replaced and their side.
        When every field fits in the cache, fields are cached whole and never replaced.
    masking
        N2V masking applied to each batch in the worker, yielded in its sparse form
        (``None``: batches are yielded unmasked, as one tensor).
    phase_split
        Patches of the fields' phase sub-images (see :func:`sample_patches`).
    """

    def __init__(self, refs: list[FieldRef], mean: Sequence[float], std: Sequence[float], *,
                 patch_size: int, batch_size: int, batches_per_epoch: int, seed: int, rank: int = 0,
                 augmentations: Sequence[dict] = (), regions_in_cache: int = REGIONS_IN_CACHE,
                 patches_per_region: int = PATCHES_PER_REGION, region_side: int = REGION_SIDE,
                 masking: Any = None, phase_split: int = 1) -> None:
        self.refs = list(refs)
        self.phase_split = int(phase_split)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.inv_std = (1.0 / np.asarray(std, dtype=np.float32)).reshape(-1, 1, 1)
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.rank = rank
        self.augmentations = [dict(a) for a in augmentations]
        self.turnover = len(self.refs) > regions_in_cache
        self.n_slots = min(regions_in_cache, len(self.refs))
        self.patches_per_region = patches_per_region
        self.region_side = max(region_side, patch_size * self.phase_split)
        self.masking = masking
        self._epoch = 0  # counts iterations in this process (persistent workers)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _rng(self) -> tuple[np.random.Generator, int, int]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers, base = (0, 1, 0) if info is None else (info.id, info.num_workers, info.seed - info.id)
        entropy = [self.seed, self.rank, worker, self._epoch, base % (2**63)]
        return np.random.default_rng(np.random.SeedSequence(entropy)), worker, n_workers

    def _load(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """Field ``index`` whole (a cache of every field), or a random region of it (a turning-over cache)."""
        ref = self.refs[index]
        rows, width = ref.rows[1] - ref.rows[0], ref.shape[2]
        h, w = min(self.region_side, rows), min(self.region_side, width)
        if not self.turnover or (h, w) == (rows, width):
            return ref.load()
        return ref.load((int(rng.integers(0, rows - h + 1)), int(rng.integers(0, width - w + 1)), h, w))

    def __iter__(self) -> Iterator[Any]:
        rng, worker, n_workers = self._rng()
        mask_seeds = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])  # patches stay as unmasked
        self._epoch += 1
        n = self.batches_per_epoch // n_workers + (worker < self.batches_per_epoch % n_workers)
        weights = _weights(self.refs)
        p, b = self.patch_size, self.batch_size
        slots: list[np.ndarray] = []
        uses: list[float] = []
        cached = rng.choice(len(self.refs), size=self.n_slots, replace=False, p=weights)
        for s, idx in enumerate(cached):
            slots.append(self._load(int(idx), rng))
            # first lives staggered: one slot is replaced at a time, never the whole cache at once
            uses.append(self.patches_per_region * (s + 1) / self.n_slots)
        # A turning-over cache is area-weighted by which fields enter it (each region then serves
        # the same number of patches); a cache of every field weights each patch by its field's area
        # instead, so that images of different sizes (and row bands) are drawn in proportion to their pixels.
        slot_weights = None if self.turnover else weights[cached] / weights[cached].sum()
        if slot_weights is not None and np.ptp(slot_weights) == 0:
            slot_weights = None  # equal areas: uniform, the cheaper draw
        for _ in range(n):
            batch = sample_patches(slots, b, p, rng, weights=slot_weights, phase_split=self.phase_split)
            batch -= self.mean
            batch *= self.inv_std
            augment_batch(batch, self.augmentations, rng)
            tensor = torch.from_numpy(np.ascontiguousarray(batch))
            yield tensor if self.masking is None else self.masking.sparse(tensor, int(mask_seeds.integers(2**63)))
            if not self.turnover:  # every field is cached: nothing to replace, no per-slot work per batch
                continue
            # replace worn-out regions (each served ~patches_per_region patches)
            for s in range(len(slots)):
                uses[s] -= b / len(slots)
                if uses[s] <= 0:
                    slots[s] = self._load(int(rng.choice(len(self.refs), p=weights)), rng)
                    uses[s] = self.patches_per_region


def val_patches(refs: list[FieldRef], mean: Sequence[float], std: Sequence[float], *, n: int,
                patch_size: int, seed: int, phase_split: int = 1) -> np.ndarray:
    """Draw a fixed, seeded set of ``n`` normalised validation patches ``(n, c, p, p)``
    (of phase sub-images with ``phase_split`` > 1, see :func:`sample_patches`).

    Fields are read one at a time, so memory holds one field plus the patches.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
    counts = rng.multinomial(n, _weights(refs))
    c = refs[0].shape[0]
    out = np.empty((n, c, patch_size, patch_size), dtype=np.float32)
    i = 0
    for ref, k in zip(refs, counts):
        if k == 0:
            continue
        arr = ref.load()
        sample_patches([arr], int(k), patch_size, rng, out=out[i: i + k], phase_split=phase_split)
        i += int(k)
    out -= np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    out /= np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return out
