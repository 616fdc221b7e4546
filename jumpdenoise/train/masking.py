"""N2V masking of a whole batch in a few device kernels, with no host synchronisation.

CAREamics' ``N2VManipulate`` masks one channel at a time, and each call synchronises the
host with the GPU dozens of times (``min()``/``max()`` over a device tensor element by
element, ``.item()``, boolean-mask indexing with a data-dependent size). On a GPU the
training step then waits for the masking rather than for the network.
:class:`UniformMasking` does the same thing (N2V's "uniform" replacement, CAREamics'
stratified sampling) for all patches and channels at once, with fixed shapes:

- the patch is divided into a grid of boxes of side ``sqrt(100 / p)`` pixels (``p`` in
  percent, CAREamics' unit) and one pixel is drawn uniformly in each box; boxes that
  overhang the patch keep their draw only when it falls inside (as in CAREamics), the
  others are written to a spare slot and dropped;
- each drawn pixel is replaced by the value of a pixel at offsets ``(dy, dx)``, each drawn
  uniformly from ``[-r, r]`` without 0 (``r = roi_size // 2``), clamped to the patch;
- the mask marks the drawn pixels; every channel of every patch is masked independently.

The statistics match CAREamics' (same density, same neighbourhood), the random draws do not:
a run is reproducible with its own seed. N2V2's median replacement and structN2V masks are
left to CAREamics' implementation.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["UniformMasking", "supports"]


def supports(n2v_config: Any) -> bool:
    """Whether :class:`UniformMasking` can replace CAREamics' masking for this configuration."""
    return getattr(n2v_config, "strategy", None) == "uniform" and getattr(n2v_config, "struct_mask", None) is None


class UniformMasking:
    """Drop-in for CAREamics' ``N2VManipulate`` (uniform strategy, 2-D patches).

    Parameters
    ----------
    masked_pixel_percentage
        Expected share of masked pixels, in percent (CAREamics' unit: 0.2 means 0.2 %).
    roi_size
        Side of the neighbourhood the replacement value is drawn from (odd, >= 3).
    seed
        Seed of :attr:`rng` (replace ``rng`` to reseed, as the training module does per epoch).
    device
        Device of the generator; batches must live there.
    """

    strategy = "uniform"
    struct_mask = None

    def __init__(self, masked_pixel_percentage: float, roi_size: int = 11, seed: int = 1,
                 device: str | torch.device = "cpu") -> None:
        if not 0 < masked_pixel_percentage <= 100:
            raise ValueError(f"masked_pixel_percentage must be in (0, 100], got {masked_pixel_percentage}")
        if roi_size < 3:
            raise ValueError(f"roi_size must be >= 3, got {roi_size}")
        self.masked_pixel_percentage = float(masked_pixel_percentage)
        self.roi_size = int(roi_size)
        self.box = math.sqrt(100.0 / self.masked_pixel_percentage)
        self.rng = torch.Generator(device=device).manual_seed(int(seed))
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _grid(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Box corners ``(k, 2)`` (float) and the non-zero offsets ``[-r..-1, 1..r]`` on ``device``."""
        key = (h, w, str(device))
        if key not in self._cache:
            ys = torch.arange(math.ceil(h / self.box), dtype=torch.float32) * self.box
            xs = torch.arange(math.ceil(w / self.box), dtype=torch.float32) * self.box
            corners = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)
            r = self.roi_size // 2
            span = torch.cat([torch.arange(-r, 0), torch.arange(1, r + 1)])
            self._cache[key] = (corners.to(device), span.to(device))
        return self._cache[key]

    def __call__(self, batch: torch.Tensor, *args: Any, **kwargs: Any
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask a batch ``(b, c, y, x)``; returns ``(masked, original, mask)`` like CAREamics."""
        if batch.ndim != 4:
            raise ValueError(f"UniformMasking expects (b, c, y, x) batches, got shape {tuple(batch.shape)}")
        b, c, h, w = batch.shape
        n, hw = b * c, h * w
        dev = batch.device
        corners, span = self._grid(h, w, dev)
        k = corners.shape[0]
        pos = torch.floor(corners + torch.rand((n, k, 2), generator=self.rng, device=dev) * self.box).long()
        inside = (pos[..., 0] < h) & (pos[..., 1] < w)
        step = span[torch.randint(0, span.numel(), (n, k, 2), generator=self.rng, device=dev)]
        ry = (pos[..., 0] + step[..., 0]).clamp(0, h - 1)
        rx = (pos[..., 1] + step[..., 1]).clamp(0, w - 1)
        centre = torch.where(inside, pos[..., 0] * w + pos[..., 1], hw)  # outside: the spare slot hw
        flat = batch.reshape(n, hw)
        values = flat.gather(1, ry * w + rx)
        masked = torch.empty((n, hw + 1), dtype=batch.dtype, device=dev)
        masked[:, :hw] = flat
        masked.scatter_(1, centre, values)
        mask = torch.zeros((n, hw + 1), dtype=torch.uint8, device=dev)
        mask.scatter_(1, centre, 1)
        return masked[:, :hw].reshape(b, c, h, w), batch, mask[:, :hw].reshape(b, c, h, w)
