"""The predict stage's setup: paths, well/channel selection, the model fingerprint, the prepare record.

Helpers of :mod:`jumpdenoise.stages.predict` (which re-exports the public ones):

- :func:`raw_path`, :func:`out_path`, :func:`model_path`: where the stage reads and writes;
- :func:`select_channels`, :func:`selected_fields`: what the model denoises in the plate;
- :func:`get_predictor`: the model and its predictor, kept in the stage's session;
- :func:`resume_settings`, :func:`resume_fingerprint`, :func:`file_sha256`: what decides whether an
  existing output plate is resumed;
- :func:`read_predict_record`: the record ``.jumpdenoise/predict.json`` that prepare writes.

torch and careamics are imported only inside :func:`get_predictor`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from jumpdenoise.errors import ConfigError, ModelError, PlateError
from jumpdenoise.io.ngff_markers import PREDICT_RECORD_FILE as RECORD_FILE
from jumpdenoise.io.ngff_markers import sidecar_path

if TYPE_CHECKING:
    from jumpdenoise.config import JumpDenoiseConfig
    from jumpdenoise.config.predict import PredictConfig
    from jumpdenoise.io.ngff import PlateInfo
    from jumpdenoise.predict.engine import Predictor
    from jumpdenoise.predict.model import LoadedModel
    from jumpdenoise.stages.session import PlateSession

log = logging.getLogger("jumpdenoise.predict")

__all__ = [
    "RECORD_FILE", "file_sha256", "get_predictor", "model_digest", "model_path", "out_path", "predictor_options",
    "raw_path", "read_predict_record", "resume_fingerprint", "resume_settings", "select_channels", "selected_fields",
]


def raw_path(config: JumpDenoiseConfig) -> Path:
    """The plate to denoise (``paths.raw_plate``)."""
    return Path(config.paths.raw_plate)


def out_path(config: JumpDenoiseConfig) -> Path:
    """The denoised plate (``paths.denoised_plate``)."""
    return Path(config.paths.denoised_plate)


def model_path(config: JumpDenoiseConfig) -> Path:
    """The model (``predict.model``, default ``paths.run_dir``)."""
    return Path(config.predict.model or config.paths.run_dir)


def select_channels(model: LoadedModel, info: PlateInfo) -> list[str]:
    """The plate channels the model denoises, in the model's order.

    Raises
    ------
    PlateError
        If the plate lacks a channel the model needs.
    ModelError
        If the model has no channel names and the plate another channel count.
    """
    if model.channels is None:
        if len(info.channels) != model.n_channels:
            raise ModelError(f"model {model.source} has {model.n_channels} channel(s) (no names); plate "
                             f"{info.path} has {len(info.channels)}: {info.channels}")
        return list(info.channels)
    missing = [c for c in model.channels if c not in info.channels]
    if missing:
        raise PlateError(f"plate {info.path} lacks channel(s) {missing} that model {model.source} needs "
                         f"(plate channels: {info.channels}; model channels: {model.channels})")
    return list(model.channels)


def selected_fields(config: JumpDenoiseConfig, info: PlateInfo) -> dict[str, list[int]]:
    """The fields to denoise, ``{well: [field, ...]}`` (``predict.wells`` / ``predict.fields``, default all).

    Only fields the raw plate marks complete are denoised: a plate that records completion
    (converted by jumpdenoise) and lacks the done marker of a selected field refuses the
    run, or, with ``predict.skip_missing``, leaves the field out (logged).

    Raises
    ------
    PlateError
        If the plate lacks a selected well, or a selected field is not marked complete
        (the message lists them; ``predict.skip_missing`` leaves them out instead).
    ConfigError
        If no selected field exists in the selected wells.
    """
    pc = config.predict
    wells = pc.wells or list(info.wells)
    absent = [w for w in wells if w not in info.wells]
    if absent:
        raise PlateError(f"plate {info.path} has no well(s) {absent} (wells: {', '.join(info.wells)})")
    sel = {w: [f for f in info.wells[w] if pc.fields is None or f in pc.fields] for w in wells}
    if not any(sel.values()):
        raise ConfigError(f"predict.fields: no field {pc.fields} in the selected wells of {info.path}")
    missing = incomplete_fields(info, sel)
    if missing and not pc.skip_missing:
        raise PlateError(f"plate {info.path}: {len(missing)} selected field(s) not marked complete (conversion "
                         f"failed or not run): {_field_list(missing)}; convert them, or pass --skip-missing "
                         "(predict.skip_missing) to denoise the others")
    if missing:
        log.warning("plate %s: %d field(s) not marked complete left out (skip_missing): %s",
                    info.path, len(missing), _field_list(missing))
        left_out = set(missing)
        sel = {w: [f for f in fs if (w, f) not in left_out] for w, fs in sel.items()}
        sel = {w: fs for w, fs in sel.items() if fs}
        if not sel:
            raise PlateError(f"plate {info.path}: no selected field is marked complete")
    return sel


def incomplete_fields(info: PlateInfo, selection: dict[str, list[int]]) -> list[tuple[str, int]]:
    """The ``(well, field)`` of ``selection`` that the plate does not mark complete (none
    when the plate does not record completion: see :func:`~jumpdenoise.io.ngff.field_complete`)."""
    from jumpdenoise.io.ngff import done_keys, field_key
    from jumpdenoise.io.ngff_markers import tracks_completion

    if info.kind == "external" or not tracks_completion(info.path):
        return []
    done = done_keys(info.path)
    return [(w, f) for w, fs in selection.items() for f in fs if field_key(w, f) not in done]


def _field_list(pairs: list[tuple[str, int]], shown: int = 20) -> str:
    text = ", ".join(f"{w}/{f}" for w, f in pairs[:shown])
    return text + (f" and {len(pairs) - shown} more" if len(pairs) > shown else "")


def file_sha256(path: Path, session: PlateSession | None = None) -> str:
    """SHA-256 of a file (kept in ``session`` by path, size and mtime, when given)."""
    st = path.stat()

    def digest() -> str:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        return h.hexdigest()

    if session is None:
        return digest()
    return session.cached(("sha256", str(path.resolve()), st.st_size, st.st_mtime_ns), digest)


def model_digest(config: JumpDenoiseConfig, session: PlateSession) -> tuple:
    """What identifies the model :func:`get_predictor` would load: the SHA-256 of the
    checkpoint file it picks, and the path, size and mtime of every file in the folders the
    loader reads beside it (the run folder, or the two above a checkpoint file: normalisation,
    blend weights, ``best.json``...)."""
    from jumpdenoise.train.run_folder import run_checkpoint

    path = model_path(config).resolve()
    if not path.exists():
        return (str(path),)
    try:
        checkpoint = run_checkpoint(path, config.predict.checkpoint) if path.is_dir() else path
    except ModelError:  # not a usable run folder: loading it names the problem
        return (str(path),)
    folders = [path] if path.is_dir() else [path.parent, path.parent.parent]
    beside = tuple(sorted((str(p), st.st_size, st.st_mtime_ns) for folder in folders for p in folder.iterdir()
                          if p.is_file() and (st := p.stat())))
    return str(path), file_sha256(checkpoint, session), beside


def get_predictor(config: JumpDenoiseConfig, session: PlateSession) -> Predictor:
    """The model loaded on ``predict.device`` and its :class:`Predictor`, kept in ``session``
    under the whole ``predict`` configuration and the :func:`model_digest`."""
    from jumpdenoise.predict.engine import Predictor
    from jumpdenoise.predict.model import load_model, resolve_device

    pc = config.predict
    device = resolve_device(pc.device)
    # "auto" and the device it resolves to are one key: prepare's CPU copy serves CPU units
    key = ("predictor", pc.model_copy(update={"device": str(device)}).model_dump_json(), model_digest(config, session))

    def make() -> Predictor:
        lm = load_model(model_path(config).resolve(), str(device), checkpoint=pc.checkpoint)
        return Predictor(lm, tile_size=pc.tile_size, overlap=pc.overlap, mode=pc.blending, batch_size=pc.batch_size,
                         bf16=pc.bf16, tta=pc.tta, **predictor_options(pc))

    return session.cached(key, make)


def predictor_options(pc: PredictConfig) -> dict:
    """The :class:`~jumpdenoise.predict.engine.Predictor` options of ``predict.experimental``."""
    ex = pc.experimental
    return {"compile": ex.compile, "network_variant": ex.network_variant, "autotune": ex.autotune, "cuda_graphs": ex.cuda_graphs}


def resume_settings(config: JumpDenoiseConfig, predictor: Predictor, channels: list[str], out_dtype: str) -> dict:
    """The predictor's settings (without the device), the channels, output dtype and ``compile``."""
    s = predictor.settings()
    s.pop("device")
    return {**s, "channels": channels, "dtype": out_dtype, "compile": config.predict.experimental.compile}


def resume_fingerprint(lm: LoadedModel, raw: Path, settings: dict, session: PlateSession | None = None) -> dict:
    """What an output plate must have been prepared from to be resumed: model file hash, raw plate, settings."""
    return {"model_sha256": file_sha256(lm.checkpoint, session) if lm.checkpoint else None,
            "raw_plate": str(raw.resolve()), "settings": settings}


def read_predict_record(out: Path) -> dict:
    """The record prepare wrote into the output plate (selection, channels, fingerprint)."""
    path = sidecar_path(out, RECORD_FILE)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PlateError(f"{path}: missing; run the predict stage's prepare first") from None
    except ValueError as exc:
        raise PlateError(f"{path}: unreadable ({exc})") from None
