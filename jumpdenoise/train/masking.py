"""N2V masking in the data workers: CAREamics' own masking functions, run on the CPU.

Batches leave the data workers masked, so the training device only runs the network (no
masking kernels, no host synchronisations, fixed shapes that a CUDA graph can replay).
:class:`LoaderMasking` masks a batch; :meth:`LoaderMasking.sparse` gives the form that
crosses process boundaries cheaply and :func:`densify` rebuilds the masked batch and the
mask from it on the training device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["LoaderMasking", "densify"]


class LoaderMasking:
    """CAREamics' own N2V masking functions, run on the CPU in the data workers.

    The training device then only runs the network: no masking kernels, no host
    synchronisations, and the training step has fixed shapes (it can be captured in a CUDA
    graph). The masking is CAREamics' code (``uniform_manipulate`` / ``median_manipulate``
    through :func:`jumpdenoise.compat.careamics_masking_functions`, struct masks included)
    with CAREamics' semantics: every channel of every patch is masked independently. CAREamics' ``N2VManipulate`` calls the function once per channel
    on a ``(b, y, x)`` stack; here it is called once on the ``(b * c, y, x)`` stack, which
    is the same per-patch, per-channel masking in one call. The random generator is seeded per batch by the caller.

    Parameters
    ----------
    n2v_config
        CAREamics' ``N2VManipulateConfig`` as a dict (picklable: workers rebuild it).
    """

    def __init__(self, n2v_config: dict) -> None:
        self.n2v_config = dict(n2v_config)
        self._config: Any = None

    def __getstate__(self) -> dict:
        return {"n2v_config": self.n2v_config, "_config": None}

    def __call__(self, batch: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask a CPU batch ``(b, c, y, x)`` with a generator seeded by ``seed``.

        Returns
        -------
        tuple
            ``(masked, original, mask)``, as CAREamics' transform returns them.
        """
        from jumpdenoise.compat import careamics_masking_functions, n2v_manipulate_config

        uniform_manipulate, median_manipulate = careamics_masking_functions()
        if self._config is None:
            self._config = n2v_manipulate_config(**self.n2v_config)
        cfg = self._config
        if batch.ndim < 3:
            raise ValueError(f"LoaderMasking expects (b, c, ...) batches, got shape {tuple(batch.shape)}")
        rng = torch.Generator(device="cpu").manual_seed(int(seed))
        stack = batch.reshape(-1, *batch.shape[2:])  # (b * c, y, x): one patch per (sample, channel)
        if cfg.strategy == "uniform":
            masked, mask = uniform_manipulate(patch=stack, mask_pixel_percentage=cfg.masked_pixel_percentage,
                                              subpatch_size=cfg.roi_size, struct_params=cfg.struct_mask, rng=rng)
        elif cfg.strategy == "median":
            masked, mask = median_manipulate(batch=stack, mask_pixel_percentage=cfg.masked_pixel_percentage,
                                             subpatch_size=cfg.roi_size, struct_params=cfg.struct_mask, rng=rng)
        else:  # pragma: no cover - CAREamics' config allows the two above
            raise ValueError(f"unknown N2V masking strategy {cfg.strategy!r}")
        return masked.reshape(batch.shape), batch, mask.reshape(batch.shape)

    def sparse(self, batch: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`__call__` in the form that crosses process boundaries cheaply.

        Returns
        -------
        tuple
            ``(original, index, values)``: the batch, the flat indices of the masked pixels
            (int64) and their replacement values. The dense masked batch and mask are a
            copy of the batch and mostly zeros: sending them from a data worker through
            shared memory costs more than rebuilding them with :func:`densify` on the
            training device.
        """
        masked, _, mask = self(batch, seed)
        flat = mask.reshape(-1).numpy().view(bool)  # 0/1 bytes: numpy scans bools ~6x faster than torch
        index = torch.from_numpy(np.flatnonzero(flat))
        return batch, index, masked.reshape(-1)[index]


def densify(original: torch.Tensor, index: torch.Tensor, values: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(masked, original, mask)`` from :meth:`LoaderMasking.sparse`'s output (on any device)."""
    masked = original.clone()
    masked.view(-1).index_copy_(0, index, values.to(original.dtype))
    mask = torch.zeros(original.shape, dtype=torch.uint8, device=original.device)
    mask.view(-1).index_fill_(0, index, 1)
    return masked, original, mask
