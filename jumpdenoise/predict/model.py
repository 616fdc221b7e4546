"""Load a trained denoiser for prediction: a run folder, a checkpoint or a BioImage Model Zoo zip.

What is loaded (:class:`LoadedModel`): the bare UNet (``torch.nn.Module`` in eval mode, no
Lightning), the channel names and the per-channel normalisation (mean/std, one set used
everywhere), the CAREamics configuration, the network's stride and its measured
receptive field (for tiling).

Which checkpoint a run folder gives: :func:`jumpdenoise.train.run_folder.run_checkpoint`
(what ``best.json`` names, else ``checkpoints/last.ckpt``, else the newest ``*.ckpt``;
``checkpoint="last"`` asks for ``last.ckpt``). CAREamics recommends the last checkpoint for
N2V because its validation loss is noisy; the train stage decides what ``best.json`` names.

Architecture: from the checkpoint's ``hyper_parameters["algorithm_config"]["model"]``
(what the weights were trained with), else from ``careamics_config.yaml`` of the run
folder. Normalisation: ``normalization.json`` of the run folder, else the CAREamics data
configuration (``input_means`` / ``input_stds``) stored in the checkpoint or the zip.

The receptive-field measurement lives in :mod:`jumpdenoise.predict.receptive_field`
(:func:`measure_receptive_field`, re-exported here).
"""

from __future__ import annotations

import json
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from jumpdenoise.errors import ModelError
from jumpdenoise.predict.digest import verify_checkpoint
from jumpdenoise.predict.receptive_field import measure_receptive_field
from jumpdenoise.quality.calibration import apply_calibration, calibration_record
from jumpdenoise.train.phase_choice import read_phase_split
from jumpdenoise.train.run_folder import run_checkpoint

if TYPE_CHECKING:
    import torch

__all__ = ["LoadedModel", "load_model", "measure_receptive_field", "read_checkpoint", "resolve_device",
           "verify_checkpoint"]


@dataclass
class LoadedModel:
    """A denoiser ready for prediction.

    Attributes
    ----------
    module
        The network (``torch.nn.Module``, eval mode) mapping normalised ``(b, c, y, x)``
        to normalised ``(b, c, y, x)``.
    channels
        Channel names the model expects, in its input order (``None`` when the source
        does not say: then the plate's channels are used in order).
    mean, std
        Per-channel normalisation (float64): the network sees ``(x - mean) / std``.
    careamics_config
        The CAREamics configuration (JSON-able dict; may be partial for bare checkpoints).
    source
        The path given to :func:`load_model`.
    checkpoint
        The weights file actually read.
    kind
        ``"run"``, ``"checkpoint"`` or ``"bmz"``.
    stride
        Total downsampling of the network (``2**depth``): inputs are padded to multiples.
    independent_channels
        Whether channels are denoised independently (grouped UNet).
    normalization_source
        Where the mean/std came from.
    blend
        ``(c, 2)`` weights of the network's output in the low and the high band of what
        predict writes, the rest being the raw image (:mod:`jumpdenoise.quality.blend`; from
        the run's ``quality.json``), or ``None``: the network's output alone.
    output_offset
        What was subtracted from the network's output per channel (intensity units;
        :mod:`jumpdenoise.quality.calibration`), or ``None``: nothing.
    phase_split
        The network was trained on the fields' ``s x s`` phase sub-images and runs on them
        (``noise_correlation.json`` of the run folder, :mod:`jumpdenoise.train.phase_choice`).
    """

    module: Any
    channels: list[str] | None
    mean: np.ndarray
    std: np.ndarray
    careamics_config: dict
    source: Path
    checkpoint: Path | None = None
    kind: str = "run"
    stride: int = 1
    independent_channels: bool = True
    normalization_source: str | None = None
    blend: np.ndarray | None = None
    output_offset: np.ndarray | None = None
    phase_split: int = 1
    _receptive_field: int | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def n_channels(self) -> int:
        """Number of input (and output) channels."""
        return int(len(self.mean))

    @property
    def device(self) -> "torch.device":
        """Device of the module's parameters (CPU for a parameterless module)."""
        import torch

        for p in self.module.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def receptive_field(self) -> int:
        """Receptive-field radius in pixels (measured once, see :func:`measure_receptive_field`)."""
        with self._lock:
            if self._receptive_field is None:
                self._receptive_field = measure_receptive_field(self.module, self.n_channels, self.stride)
            return self._receptive_field

    def provenance(self) -> dict:
        """JSON-able description for the output plate's provenance block."""
        return {
            "source": str(self.source), "kind": self.kind,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "channels": self.channels,
            "normalization": {"mean": [float(m) for m in self.mean], "std": [float(s) for s in self.std],
                              "source": self.normalization_source},
            "stride": self.stride, "receptive_field": self.receptive_field,
            "output_offset": None if self.output_offset is None else [float(v) for v in self.output_offset],
            "phase_split": self.phase_split,
            "careamics_config": self.careamics_config,
        }


# ----------------------------------------------------------------------------- helpers


def resolve_device(device: str | None) -> "torch.device":
    """``"auto"``/``None`` -> CUDA when available else CPU; other strings as torch reads them.

    Raises
    ------
    ModelError
        If CUDA is asked for and not available.
    """
    import torch

    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r}: CUDA is not available on this machine")
    return dev


def _read_normalization(path: Path) -> tuple[list[str] | None, list[float], list[float]]:
    try:
        norm = json.loads(path.read_text())
        return (list(norm["channels"]) if norm.get("channels") is not None else None,
                [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not a valid normalization.json ({exc})") from None


def _norm_from_data_config(data_config: dict | None, origin: str) -> tuple[list[float], list[float]]:
    norm = (data_config or {}).get("normalization") or {}
    mean, std = norm.get("input_means"), norm.get("input_stds")
    if not mean or not std:
        raise ModelError(f"{origin}: no normalisation found (no normalization.json and no "
                         "input_means/input_stds in the CAREamics data configuration)")
    return [float(v) for v in mean], [float(v) for v in std]


def _build_unet(model_cfg: dict, origin: str) -> Any:
    from careamics.config.architectures import UNetConfig
    from careamics.models import model_factory

    if model_cfg.get("architecture", "UNet") != "UNet":
        raise ModelError(f"{origin}: architecture {model_cfg.get('architecture')!r} is not supported (UNet only)")
    try:
        cfg = UNetConfig(**{"architecture": "UNet", **model_cfg})
    except Exception as exc:  # pydantic ValidationError
        raise ModelError(f"{origin}: invalid UNet configuration ({exc})") from None
    return model_factory(cfg), cfg.model_dump(mode="json")


def _load_state(module: Any, state: dict, origin: str) -> None:
    prefix = "model."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} or dict(state)
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise ModelError(f"{origin}: weights do not match the UNet configuration ({' '.join(first)})") from None


def read_checkpoint(path: str | Path) -> dict:
    """Read a Lightning checkpoint file: the one ``torch.load`` policy of jumpdenoise.

    Tensors and plain types only (``weights_only=True``) where the file allows it; a
    checkpoint holding other Python objects (CAREamics' hyper-parameters) is read in full,
    which is safe for checkpoints jumpdenoise or CAREamics wrote, and only those should be
    given (their digests are checked by :func:`load_model`).

    Raises
    ------
    ModelError
        If the file is truncated, not a checkpoint, or holds no ``state_dict``.
    """
    import pickle

    import torch

    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "weights_only" not in str(exc):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated, not a zip/pickle, wrong content
        raise ModelError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


# ----------------------------------------------------------------------------- loaders


def _load_checkpoint(ckpt_path: Path, run: Path | None, source: Path, kind: str) -> LoadedModel:
    verify_checkpoint(ckpt_path)
    ckpt = read_checkpoint(ckpt_path)
    cfg_file = run / "careamics_config.yaml" if run is not None else None
    file_cfg: dict = {}
    if cfg_file is not None and cfg_file.is_file():
        try:
            file_cfg = yaml.safe_load(cfg_file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ModelError(f"{cfg_file}: not valid YAML ({exc})") from None
    hp_alg = (ckpt.get("hyper_parameters") or {}).get("algorithm_config") or {}
    model_cfg = hp_alg.get("model") or (file_cfg.get("algorithm_config") or {}).get("model")
    if not model_cfg:
        raise ModelError(f"{ckpt_path}: no UNet configuration (neither in the checkpoint's hyper_parameters "
                         f"nor in {cfg_file or 'a careamics_config.yaml beside it'})")
    module, model_json = _build_unet(dict(model_cfg), str(ckpt_path))
    _load_state(module, ckpt["state_dict"], str(ckpt_path))
    data_cfg = (ckpt.get("datamodule_hyper_parameters") or {}).get("data_config") or file_cfg.get("data_config")
    config = dict(file_cfg) if file_cfg else {"algorithm_config": hp_alg, "data_config": data_cfg}
    config.setdefault("algorithm_config", {})["model"] = model_json
    norm_file = run / "normalization.json" if run is not None else None
    if norm_file is not None and norm_file.is_file():
        channels, mean, std = _read_normalization(norm_file)
        norm_source = str(norm_file)
    else:
        channels = None
        mean, std = _norm_from_data_config(data_cfg, str(ckpt_path))
        norm_source = f"{ckpt_path} (CAREamics data configuration)"
    return _finish(module, model_json, channels, mean, std, config, source, ckpt_path, kind, norm_source)


def _load_bmz(path: Path) -> LoadedModel:
    verify_checkpoint(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            rdf_name = next((n for n in names if n.endswith(("rdf.yaml", "bioimageio.yaml"))), None)
            rdf = yaml.safe_load(zf.read(rdf_name)) if rdf_name else {}
            norm_json = json.loads(zf.read("normalization.json")) if "normalization.json" in names else None
    except (zipfile.BadZipFile, OSError, yaml.YAMLError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable BioImage Model Zoo archive ({exc})") from None
    if rdf_name is None:
        raise ModelError(f"{path}: not a BioImage Model Zoo archive (no rdf.yaml or bioimageio.yaml inside)")
    try:
        from jumpdenoise.compat import load_careamics_bmz

        # unpacked into a folder of our own: bioimageio would unpack into one it never removes
        with tempfile.TemporaryDirectory(prefix="jd-bmz-") as unpacked:
            with zipfile.ZipFile(path) as zf:
                zf.extractall(unpacked)
            config, lightning_module = load_careamics_bmz(Path(unpacked) / rdf_name)
    except Exception as exc:  # bioimageio validation / careamics errors
        raise ModelError(f"{path}: cannot load the BioImage Model Zoo model ({type(exc).__name__}: {exc})") from None
    module = lightning_module.model
    config_json = config.model_dump(mode="json")
    model_json = config_json["algorithm_config"]["model"]
    channels = None
    if norm_json is not None:
        channels = norm_json.get("channels")
        mean, std = norm_json["mean"], norm_json["std"]
        norm_source = f"{path}:normalization.json"
    else:
        mean, std = _norm_from_data_config(config_json.get("data_config"), str(path))
        norm_source = f"{path} (CAREamics data configuration)"
        for axis in ((rdf.get("inputs") or [{}])[0].get("axes") or []):
            if isinstance(axis, dict) and axis.get("type") == "channel":
                names = [str(n) for n in axis.get("channel_names") or []]
                if len(names) == len(mean) and names != ["channel"]:
                    channels = names
    return _finish(module, model_json, channels, mean, std, config_json, path, path, "bmz", norm_source)


def _finish(module: Any, model_json: dict, channels: list[str] | None, mean: list[float], std: list[float],
            config: dict, source: Path, checkpoint: Path | None, kind: str, norm_source: str) -> LoadedModel:
    n_in = int(model_json.get("in_channels", len(mean)))
    n_out = int(model_json.get("num_classes", n_in))
    if n_out != n_in:
        raise ModelError(f"{source}: the model maps {n_in} channel(s) to {n_out}; a denoiser keeps the channel count")
    if len(mean) != n_in or len(std) != n_in:
        raise ModelError(f"{source}: normalisation has {len(mean)} mean(s) and {len(std)} std(s) for a model "
                         f"of {n_in} channel(s)")
    if channels is not None and len(channels) != n_in:
        raise ModelError(f"{source}: {len(channels)} channel name(s) {channels} for a model of {n_in} channel(s)")
    std_arr = np.asarray(std, dtype=np.float64)
    if not np.all(np.isfinite(std_arr)) or np.any(std_arr <= 0):
        raise ModelError(f"{source}: normalisation std must be positive, got {list(std)}")
    depth = int(model_json.get("depth", 0))
    pool = 2 if not model_json.get("pool_kernel") else int(model_json["pool_kernel"])
    return LoadedModel(module=module.eval(), channels=list(channels) if channels else None,
                       mean=np.asarray(mean, dtype=np.float64), std=std_arr, careamics_config=config,
                       source=source, checkpoint=checkpoint, kind=kind, stride=pool ** depth,
                       independent_channels=bool(model_json.get("independent_channels", True)),
                       normalization_source=norm_source)


def load_model(path: str | Path | LoadedModel, device: str | None = "cpu", *,
               checkpoint: str | None = None) -> LoadedModel:
    """Load a denoiser for prediction.

    Parameters
    ----------
    path
        A training run folder (``careamics_config.yaml``, ``normalization.json``,
        ``checkpoints/``), a Lightning ``.ckpt`` of CAREamics' N2V module (its run folder,
        when it sits in one, gives channel names and normalisation), or a BioImage Model
        Zoo ``.zip``. A :class:`LoadedModel` is moved to ``device`` and returned.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"``.
    checkpoint
        Run folders only: ``"best"`` (default: best.json, else last), ``"last"``, or a path.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelError
        If the path is missing, the checkpoint corrupt or damaged (:func:`verify_checkpoint`),
        the weights do not match the
        configuration, or the normalisation is missing or invalid (the message names the file).
    """
    dev = resolve_device(device)
    if isinstance(path, LoadedModel):
        path.module.to(dev)
        return path
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model {p} not found (expected a run folder, a .ckpt or a .zip)")
    if p.is_dir():
        if not (p / "careamics_config.yaml").is_file() and not (p / "checkpoints").is_dir():
            raise ModelError(f"{p}: not a training run folder (no careamics_config.yaml, no checkpoints/)")
        if not (p / "normalization.json").is_file():
            raise ModelError(f"{p}: normalization.json missing from the run folder")
        loaded = _load_checkpoint(run_checkpoint(p, checkpoint), p, p, "run")
        loaded = apply_calibration(loaded, calibration_record(p, loaded.checkpoint))
        loaded.phase_split = read_phase_split(p)
    elif zipfile.is_zipfile(p) and p.suffix.lower() == ".zip":
        loaded = _load_bmz(p)
    else:
        run = next((d for d in (p.parent, p.parent.parent)
                    if (d / "normalization.json").is_file() or (d / "careamics_config.yaml").is_file()), None)
        loaded = _load_checkpoint(p, run, p, "checkpoint")
        loaded = apply_calibration(loaded, calibration_record(run, loaded.checkpoint))
        loaded.phase_split = read_phase_split(run) if run is not None else 1
    loaded.module.to(dev)
    return loaded
