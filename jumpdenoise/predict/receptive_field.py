"""Measure a network's receptive field: how far an input pixel changes the output.

Tiled prediction needs it to choose the tile overlap
(:func:`jumpdenoise.predict.engine.auto_overlap`); :attr:`jumpdenoise.predict.model.LoadedModel.receptive_field`
measures it once per model. torch is imported only inside :func:`measure_receptive_field`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["measure_receptive_field"]


def measure_receptive_field(module: Any, n_channels: int, stride: int = 1, *, max_size: int = 2048) -> int:
    """Radius (pixels) over which an input pixel changes the output of ``module``.

    Impulses of +-50 (normalised units) are added at ``stride`` pooling phases to a random
    image; the radius is the farthest output change (above 1e-9 of the largest change, to
    ignore rounding) from any impulse. The measurement runs on a float64 CPU copy of the
    network (no Winograd/TF32 rounding spreading changes beyond the true receptive field);
    it is exact for convolutional networks in eval mode and cheap (one batched forward
    pass, repeated with a larger image if the change reaches the border).
    """
    import copy

    import torch

    module = copy.deepcopy(module).to("cpu", torch.float64).eval()
    dev = torch.device("cpu")
    stride = max(1, int(stride))
    size = max(64, 16 * stride)
    gen = torch.Generator().manual_seed(0)
    while True:
        c = size // 2
        base = torch.randn(1, n_channels, size, size, generator=gen, dtype=torch.float64)
        batch = [base]
        where = []
        for p in range(stride):
            for sign in (50.0, -50.0):
                x = base.clone()
                x[0, :, c + p, c + p] += sign
                batch.append(x)
                where.append(c + p)
        with torch.inference_mode():
            out = module(torch.cat(batch).to(dev))
        radius, touches = 0, False
        for k, pos in enumerate(where):
            diff = (out[k + 1] - out[0]).abs().amax(dim=0)
            changed = diff > 1e-9 * float(diff.max())
            ys, xs = torch.nonzero(changed, as_tuple=True)
            if ys.numel() == 0:
                continue
            radius = max(radius, int((ys - pos).abs().max()), int((xs - pos).abs().max()))
            touches |= bool(ys.min() == 0 or xs.min() == 0 or ys.max() == size - 1 or xs.max() == size - 1)
        if not touches or size >= max_size:
            return radius
        size *= 2
