"""Per-channel normalisation of fields with a model's mean and standard deviation."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["denormalize", "normalize"]


def normalize(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(image - mean) / std`` per channel of a ``(c, y, x)`` array, in float32."""
    m = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, np.float32).reshape(-1, 1, 1)
    out = image.astype(np.float32)
    out -= m
    out /= s
    return out


def denormalize(pred: Any, mean: np.ndarray, std: np.ndarray) -> Any:
    """Inverse of :func:`normalize` (numpy array or torch tensor, float32, in place)."""
    c = len(mean)
    if isinstance(pred, np.ndarray):
        pred *= np.asarray(std, np.float32).reshape(c, 1, 1)
        pred += np.asarray(mean, np.float32).reshape(c, 1, 1)
        return pred
    import torch

    with torch.inference_mode():
        pred.mul_(torch.as_tensor(np.asarray(std, np.float32), device=pred.device).view(c, 1, 1))
        pred.add_(torch.as_tensor(np.asarray(mean, np.float32), device=pred.device).view(c, 1, 1))
    return pred
