"""A network's forward pass replayed as a CUDA graph (prediction on a GPU).

Denoising a whole 1080 x 1080 field runs the network's ~100 kernels once per field; on a
fast GPU the host may then spend as long launching them (Python, the dispatcher, cuDNN's
plan look-ups) as the device spends running them, and the host is also busy reading and
writing fields. :class:`GraphedNetwork` captures the forward pass once per input shape
and replays it: one launch per field.

Safety: the first call for a shape runs the network eagerly, warms it up, captures it, replays
the capture on the same input and compares: if the two differ by more than float rounding,
graphs are switched off for that shape (logged) and the network runs eagerly. Weights never
change during prediction, so a capture stays valid. Other threads may use the GPU while a
capture is recorded (``capture_error_mode="thread_local"``: reader threads upload fields).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("jumpdenoise.predict")

__all__ = ["GraphedNetwork"]


class GraphedNetwork:
    """Call ``net(batch)`` through CUDA graphs (one per batch shape and dtype).

    Parameters
    ----------
    net
        The network (eval mode, on a CUDA device).
    bf16
        Run (and capture) under bf16 autocast.
    warmup
        Eager passes on a side stream before a capture (cuDNN plans, autotuning).
    tolerance
        Largest accepted ``max |replay - eager|`` relative to ``max |eager|`` at the check.

    Call under ``torch.inference_mode()``. Returns a fresh tensor each call (never the
    graph's own output buffer).
    """

    def __init__(self, net: Any, *, bf16: bool = False, warmup: int = 2, tolerance: float = 1e-3) -> None:
        self.net = net
        self.bf16 = bool(bf16)
        self.warmup = int(warmup)
        self.tolerance = float(tolerance)
        self._graphs: dict[tuple, tuple | None] = {}

    @property
    def captured(self) -> int:
        """Shapes replayed from a graph (those that passed the check)."""
        return sum(v is not None for v in self._graphs.values())

    def _eager(self, batch: Any) -> Any:
        import torch

        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            return self.net(batch)

    def _capture(self, batch: Any) -> tuple[tuple | None, Any]:
        """``(graph entry or None, eager output for batch)``."""
        import torch

        eager = self._eager(batch)
        try:
            static_in = batch.clone()
            side = torch.cuda.Stream(device=batch.device)
            side.wait_stream(torch.cuda.current_stream(batch.device))
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self._eager(static_in)
            torch.cuda.current_stream(batch.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                static_out = self._eager(static_in)
            graph.replay()
            ref = eager.float()
            diff = float((static_out.float() - ref).abs().max())
            scale = float(ref.abs().max())
        except Exception as exc:  # noqa: BLE001 - eager prediction is still right
            log.warning("CUDA graphs off for input %s (capture failed: %s: %s)", tuple(batch.shape),
                        type(exc).__name__, exc)
            return None, eager
        if not diff <= self.tolerance * scale + 1e-6:
            log.warning("CUDA graphs off for input %s: the replay differs from the eager pass by %.3g "
                        "(max |output| %.3g)", tuple(batch.shape), diff, scale)
            return None, eager
        log.info("prediction replays a CUDA graph for input %s", tuple(batch.shape))
        return (graph, static_in, static_out), eager

    def __call__(self, batch: Any) -> Any:
        key = (tuple(batch.shape), batch.dtype, str(batch.device))
        if key not in self._graphs:
            self._graphs[key], eager = self._capture(batch)
            return eager
        entry = self._graphs[key]
        if entry is None:
            return self._eager(batch)
        graph, static_in, static_out = entry
        static_in.copy_(batch)
        graph.replay()
        return static_out.clone()
