"""Deterministic CPU thread counts for torch.

oneDNN's reductions, and so the last bits of a convolution's output on CPU, depend on torch's
intra-op thread count, which other libraries change in-process (Lightning sets it for DDP).
Training and prediction pin it to the CPUs the process may use, so that two jobs with the
same CPU allotment give the same bits.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


def cpu_threads() -> int:
    """CPUs this process may run on (respects SLURM / cgroup CPU affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def pinned_torch_threads(n: int | None = None) -> Iterator[int]:
    """Set torch's intra-op threads to ``n`` (default :func:`cpu_threads`), restore afterwards."""
    import torch

    saved = torch.get_num_threads()
    n = n or cpu_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(saved)
