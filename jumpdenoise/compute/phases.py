"""Phase sub-images: ``x[..., py::s, px::s]`` for ``py, px < s``, and back.

Training and prediction on the ``s x s`` phase sub-images of a field put pixels ``s`` apart
next to each other, so that noise correlated between neighbouring pixels (see
:mod:`jumpdenoise.quality.correlation`) no longer reaches the blind spot of a Noise2Void
network. Works on numpy arrays and torch tensors alike (views, no copies); fields of any size
(phase sub-images of an odd side differ by one pixel).
"""

from __future__ import annotations

from typing import Any

__all__ = ["merge_phases", "split_phases"]


def split_phases(x: Any, s: int) -> list[Any]:
    """The ``s * s`` phase sub-images of ``x`` (last two axes), row phase first."""
    return [x[..., py::s, px::s] for py in range(s) for px in range(s)]


def merge_phases(parts: list[Any], s: int, out: Any) -> Any:
    """Write the sub-images of :func:`split_phases` back into ``out`` (same shape as the field); return it."""
    if len(parts) != s * s:
        raise ValueError(f"{len(parts)} sub-images for phase split {s} (need {s * s})")
    for k, part in enumerate(parts):
        out[..., k // s::s, k % s::s] = part
    return out
