"""The prediction engine: fields in, denoised fields out, as fast as the device allows.

:class:`Predictor` denoises one normalised field on the device: whole (padded to the
network's stride) or in tiles (fixed-size batches, stitched on the device), under
``torch.inference_mode``, optionally in bf16 autocast and through ``torch.compile``. The
network it runs is chosen in :mod:`jumpdenoise.predict.network_variants`; fields are normalised
with :mod:`jumpdenoise.predict.normalization`.

:func:`run_fields` (in :mod:`jumpdenoise.predict.pipeline`, re-exported here) makes a
pipeline of it: reader threads load the next fields and normalise them on the device
(:meth:`Predictor.upload`) while it computes; writer threads or processes convert and store
the previous ones; every queue is bounded, so memory stays at a few fields whatever the
plate size.

Determinism: a field's result depends only on the field, the model and the settings. A
batch never mixes fields and always has the same shape (the last batch of tiles is padded
with zeros), cuDNN runs deterministic algorithms without autotuning (unless
``autotune=True``), and in fp32 mode TF32 is off; on CPU the thread count is pinned to the
CPUs the process may use. The same field predicted by two jobs on the same kind of device
(and CPU allotment) and with the same ``network_variant`` gives the same bits.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Sequence

import numpy as np

from jumpdenoise.compute.threads import pinned_torch_threads
from jumpdenoise.compute.tiling import BlendMode, TilePlan, plan_tiles, round_up
from jumpdenoise.errors import ModelError
from jumpdenoise.predict.model import LoadedModel
from jumpdenoise.predict.network_variants import fuse_for_inference, resolve_network_variant
from jumpdenoise.predict.normalization import denormalize, normalize

log = logging.getLogger("jumpdenoise.predict")

__all__ = ["Predictor", "auto_overlap"]

def auto_overlap(receptive_field: int, stride: int, mode: BlendMode = "crop") -> int:
    """Smallest overlap giving exact stitching: ``2 r`` (+16 px of ramp when blending), in strides."""
    extra = 16 if mode == "blend" else 0
    return round_up(2 * int(receptive_field) + extra, stride)


@contextlib.contextmanager
def _numerics(device_type: str, bf16: bool, autotune: bool = False) -> Iterator[None]:
    """Deterministic numerics (restored afterwards).

    CUDA: deterministic cuDNN, no autotuning, TF32 off unless bf16; with ``autotune``,
    cuDNN benchmarks its algorithms and may pick non-deterministic ones. CPU: torch's
    intra-op thread count is pinned (:func:`jumpdenoise.compute.threads.pinned_torch_threads`).
    """
    import torch

    if device_type != "cuda":
        with pinned_torch_threads():
            yield
        return
    b = torch.backends
    saved = (b.cudnn.deterministic, b.cudnn.benchmark, b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)
    b.cudnn.deterministic, b.cudnn.benchmark = not autotune, bool(autotune)
    if not bf16:
        b.cudnn.allow_tf32 = b.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        (b.cudnn.deterministic, b.cudnn.benchmark, b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32) = saved


# The 8 symmetries of the square: (k quarter turns, then flip x?) and their inverses.
_DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


class Predictor:
    """Denoise fields with a loaded model on its device.

    Parameters
    ----------
    model
        The loaded model (its device is used).
    tile_size
        Tile side (rounded up to the stride); ``None`` predicts whole fields.
    overlap
        Overlap of neighbouring tiles; ``None`` takes the smallest exact one from the
        model's receptive field (:func:`auto_overlap`).
    mode
        ``"crop"`` (keep tile centres) or ``"blend"`` (cosine ramps).
    batch_size
        Tiles per forward pass (tiles of one field only; the last batch is zero-padded).
    bf16
        bfloat16 autocast (faster on recent GPUs; outputs differ slightly from fp32).
    compile
        ``torch.compile`` the network (first call slower; static shapes).
    tta
        Average over the 8 flips/rotations (8x the compute).
    fuse
        Fold batch norms into convolutions (:func:`fuse_for_inference`).
    cpu_fast
        On the CPU in fp32 with ``network_variant="auto"``, run the network with fused oneDNN ops
        on channels-last activations (:func:`jumpdenoise.predict.cpu_fast.prepare_for_cpu`;
        about 1.7x faster, same output within float rounding, no first-call cost).
    network_variant
        How the network runs (:func:`jumpdenoise.predict.gpu_fast.prepare_for_gpu`):
        ``"grouped"`` (as it is), ``"channels_last"``, ``"split"`` (one dense sub-network
        per independent channel; networks it cannot split run channels-last) or ``"auto"``
        (:func:`resolve_network_variant`: ``cpu_fast`` on the CPU, :data:`CUDA_AUTO_VARIANT` on
        CUDA). An explicit variant applies on any device (then ``cpu_fast`` is not used).
        Outputs of different variants differ by float rounding only. The variant actually run
        is :attr:`variant_used`.
    autotune
        CUDA: let cuDNN benchmark its algorithms for each input shape (``cudnn.benchmark``)
        and allow non-deterministic ones. Often faster, but the chosen algorithm may differ
        between jobs, so outputs are no longer guaranteed bit-identical between jobs (they
        differ by float rounding). Default off: deterministic cuDNN. No effect on the CPU.
    cuda_graphs
        CUDA: replay the forward pass as a CUDA graph, one launch per field or batch of
        tiles (:class:`~jumpdenoise.predict.graphs.GraphedNetwork`; checked against the eager
        pass once per shape, off if they differ). ``None``: on for CUDA without ``compile``.
    """

    def __init__(self, model: LoadedModel, *, tile_size: int | None = None, overlap: int | None = None,
                 mode: BlendMode = "crop", batch_size: int = 8, bf16: bool = False, compile: bool = False,
                 tta: bool = False, fuse: bool = True, cpu_fast: bool = True, network_variant: str = "auto",
                 autotune: bool = False, cuda_graphs: bool | None = None) -> None:
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.device = model.device
        self.tile_size = tile_size
        self.mode = mode
        self.batch_size = int(batch_size)
        self.bf16 = bool(bf16)
        self.tta = bool(tta)
        self.network_variant = network_variant
        self.autotune = bool(autotune)
        rf = model.receptive_field if (tile_size is not None or overlap is None) else 0
        self.receptive_field = rf
        self.overlap = auto_overlap(rf, model.stride, mode) if overlap is None else int(overlap)
        if tile_size is not None and self.overlap < 2 * rf:
            log.warning("overlap %d < 2 x receptive-field radius %d: tiles may differ from the whole-field "
                        "prediction near their seams (use overlap >= %d)", self.overlap, rf, 2 * rf)
        net = fuse_for_inference(model.module) if fuse else model.module
        resolved = resolve_network_variant(network_variant, self.device.type, self.bf16, cpu_fast)
        if resolved == "cpu_fast":
            from jumpdenoise.predict.cpu_fast import prepare_for_cpu

            net = prepare_for_cpu(net)
        else:
            from jumpdenoise.predict.gpu_fast import prepare_for_gpu

            net = prepare_for_gpu(net, resolved)
        from jumpdenoise.predict.gpu_fast import network_variant_of

        self.variant_used = network_variant_of(net)  # what runs, after any fallback
        self.net = torch.compile(net, dynamic=False) if compile else net
        self.cuda_graphs = self.device.type == "cuda" and not compile and cuda_graphs is not False
        if self.cuda_graphs:
            from jumpdenoise.predict.graphs import GraphedNetwork

            self._graphed = GraphedNetwork(self.net, bf16=self.bf16)
        self._plans: dict[tuple[int, int], TilePlan] = {}
        self._weights: dict[tuple[int, int], list] = {}
        self._norm: tuple | None = None
        self._blend = None
        if model.blend is not None:  # weights and band filter on the device once, not per field
            from jumpdenoise.quality.blend import low_pass_kernel_tensor

            self._blend = (torch.as_tensor(np.asarray(model.blend, np.float32), device=self.device).view(-1, 2),
                           low_pass_kernel_tensor(self.device))

    def settings(self) -> dict:
        """JSON-able description of the tiling and numerics (for provenance)."""
        return {"tile_size": self.tile_size, "overlap": self.overlap, "mode": self.mode,
                "batch_size": self.batch_size, "bf16": self.bf16, "tta": self.tta,
                "receptive_field": self.receptive_field, "stride": self.model.stride,
                "device": str(self.device), "network_variant": self.network_variant, "autotune": self.autotune,
                "cuda_graphs": self.cuda_graphs, "phase_split": self.model.phase_split,
                "blend": None if self.model.blend is None else np.asarray(self.model.blend).tolist()}

    def plan(self, shape_yx: Sequence[int]) -> TilePlan:
        """The tile plan of fields of ``shape_yx`` (cached)."""
        key = (int(shape_yx[0]), int(shape_yx[1]))
        if key not in self._plans:
            guard = min(self.receptive_field, max(0, (self.overlap - 2) // 2))
            self._plans[key] = plan_tiles(key, tile_size=self.tile_size, overlap=self.overlap,
                                          stride=self.model.stride, mode=self.mode, guard=guard)
        return self._plans[key]

    # ------------------------------------------------------------------ device work

    def _forward(self, batch: Any) -> Any:
        import torch

        if self.cuda_graphs:
            out = self._graphed(batch)
        else:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.net(batch)
        if out.shape != batch.shape:
            raise ModelError(f"{self.model.source}: the network returned {tuple(out.shape)} for an input of "
                             f"{tuple(batch.shape)}")
        return out.float()

    def _pad(self, x: Any, padded_yx: tuple[int, int]) -> Any:
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        ph, pw = padded_yx[0] - h, padded_yx[1] - w
        if ph == 0 and pw == 0:
            return x
        mode = "reflect" if ph < h and pw < w else "replicate"
        return F.pad(x[None], (0, pw, 0, ph), mode=mode)[0]

    def _predict_once(self, x: Any) -> Any:
        import torch

        from jumpdenoise.compute.tiling import finish_blend, stitch

        plan = self.plan(x.shape[-2:])
        xp = self._pad(x, plan.padded_yx)
        h, w = plan.shape_yx
        if plan.whole:
            return self._forward(xp[None])[0, :, :h, :w]
        c = x.shape[0]
        ty, tx = plan.tile_yx
        if plan.mode == "crop":
            out = torch.empty((c, h, w), dtype=torch.float32, device=x.device)
            acc = None
        else:
            out = torch.zeros((c, *plan.padded_yx), dtype=torch.float32, device=x.device)
            acc = torch.zeros((1, *plan.padded_yx), dtype=torch.float32, device=x.device)
            if plan.shape_yx not in self._weights:
                self._weights[plan.shape_yx] = [torch.from_numpy(plan.weights(t)[None]).to(x.device)
                                                for t in plan.tiles]
        tiles = list(plan.tiles)
        batch = torch.zeros((self.batch_size, c, ty, tx), dtype=x.dtype, device=x.device)
        for i in range(0, len(tiles), self.batch_size):
            chunk = tiles[i:i + self.batch_size]
            if len(chunk) < self.batch_size:
                batch.zero_()
            for k, t in enumerate(chunk):
                batch[k] = xp[:, t.y0:t.y0 + ty, t.x0:t.x0 + tx]
            pred = self._forward(batch)
            weights = self._weights[plan.shape_yx][i:i + len(chunk)] if acc is not None else None
            stitch(plan, out, pred[:len(chunk)], chunk, acc, weights)
        return out if acc is None else finish_blend(plan, out, acc)

    def predict_normalized(self, x: Any) -> Any:
        """Denoise one normalised field ``(c, y, x)`` (float32 tensor on the device).

        With blend weights (:attr:`LoadedModel.blend`), the network's output is blended with
        ``x`` per channel and band (:func:`jumpdenoise.quality.blend.apply_blend`). A model
        trained on phase sub-images (:attr:`LoadedModel.phase_split`) denoises each phase
        sub-image of the field as a field of its own (tiled, blended), and the results are
        interleaved back.
        """
        import torch

        s = self.model.phase_split
        if s == 1:
            return self._predict_field(x)
        from jumpdenoise.compute.phases import merge_phases, split_phases

        with torch.inference_mode():
            out = torch.empty((x.shape[0], *x.shape[-2:]), dtype=torch.float32, device=x.device)
            return merge_phases([self._predict_field(p.contiguous()) for p in split_phases(x, s)], s, out)

    def _predict_field(self, x: Any) -> Any:
        import torch

        y = self._network_output(x)
        if self._blend is None:
            return y
        from jumpdenoise.quality.blend import apply_blend

        with torch.inference_mode():
            return apply_blend(y, x, *self._blend)

    def _network_output(self, x: Any) -> Any:
        import torch

        if x.ndim != 3 or x.shape[0] != self.model.n_channels:
            raise ModelError(f"{self.model.source}: expects (c, y, x) input with c={self.model.n_channels}, "
                             f"got {tuple(x.shape)}")
        with torch.inference_mode(), _numerics(self.device.type, self.bf16, self.autotune):
            if not self.tta:
                return self._predict_once(x)
            total = None
            for k, flip in _DIHEDRAL:
                t = torch.rot90(x, k, dims=(-2, -1))
                t = torch.flip(t, dims=(-1,)) if flip else t
                y = self._predict_once(t.contiguous())
                y = torch.flip(y, dims=(-1,)) if flip else y
                y = torch.rot90(y, -k, dims=(-2, -1))
                total = y.clone() if total is None else total.add_(y)
            return total.div_(len(_DIHEDRAL))

    def to_device(self, normalized: np.ndarray) -> Any:
        """Move a normalised float32 field to the device (pinned, asynchronous on CUDA)."""
        import torch

        t = torch.from_numpy(np.ascontiguousarray(normalized, dtype=np.float32))
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def upload(self, raw: np.ndarray) -> Any:
        """Raw field ``(c, y, x)`` -> normalised float32 tensor on the device.

        The raw pixels travel as they are (16-bit fields: half the bytes of float32;
        pinned and asynchronous on CUDA) and are normalised on the device, bit for bit
        like :func:`normalize` (float32 conversion, subtraction and division are
        correctly rounded on CPU and CUDA; the mean and std are device tensors, so the
        division is a true division, not a multiplication by a reciprocal). Dtypes torch
        cannot hold are normalised on the host.
        """
        import torch

        arr = np.ascontiguousarray(raw)
        try:
            t = torch.from_numpy(arr)
        except (TypeError, ValueError):  # e.g. big-endian data
            return self.to_device(normalize(arr, self.model.mean, self.model.std))
        if self._norm is None or self._norm[0].device != self.device:
            c = len(self.model.mean)
            self._norm = tuple(torch.as_tensor(np.asarray(v, np.float32).reshape(c, 1, 1)).to(self.device)
                               for v in (self.model.mean, self.model.std))
        mean, std = self._norm
        with torch.inference_mode():
            try:
                if self.device.type == "cuda":
                    t = t.pin_memory().to(self.device, non_blocking=True)
                else:
                    t = t.to(self.device)
                x = t.to(torch.float32, copy=True)  # never in place on the caller's array
            except (RuntimeError, TypeError):  # a dtype the device cannot convert
                return self.to_device(normalize(arr, self.model.mean, self.model.std))
            return x.sub_(mean).div_(std)

    def denoise(self, image: np.ndarray) -> np.ndarray:
        """Denoise one raw field ``(c, y, x)`` (any dtype) -> float32 in the raw units."""
        x = self.upload(np.asarray(image))
        y = denormalize(self.predict_normalized(x), self.model.mean, self.model.std)
        return y.cpu().numpy()


# ----------------------------------------------------------------------------- pipeline

_PIPELINE = ("FieldFailure", "PipelineReport", "run_fields")


def __getattr__(name: str) -> Any:
    """The pipeline lives in :mod:`jumpdenoise.predict.pipeline` (re-exported here)."""
    if name in _PIPELINE:
        from jumpdenoise.predict import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
