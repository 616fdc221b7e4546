"""The guard against harm: act on a run's estimated gain (``quality.json``) before and during predict.

A channel whose estimated gain (:mod:`jumpdenoise.quality.gain`, ``gain_db``: of what predict
writes) is <= 0 dB would come out further from the truth than the raw image. A pipeline stops
before predict on such a channel (:func:`check_gain_before_predict`) unless
``predict.allow_worse`` is true; predict itself warns (:func:`warn_worse_channels`). Only
``reliable`` estimates are acted on; the others are reported and warned about.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jumpdenoise.errors import JumpDenoiseError
from jumpdenoise.quality.gain import QUALITY_JSON, read_quality, run_folder_of

__all__ = ["ADVICE", "HarmfulModelError", "check_gain_before_predict", "describe_worse", "warn_worse_channels",
           "worse_channels"]

log = logging.getLogger(__name__)

ADVICE = ("train longer (train.epochs, train.patches_per_epoch), try N2V2 (train.n2v.n2v2: true), or drop the "
          "channel (train.channels); set predict.allow_worse: true to predict anyway")



class HarmfulModelError(JumpDenoiseError):
    """The model's estimated gain is <= 0 dB on some channel: denoising would make it worse."""


def worse_channels(model: str | Path, channels: Sequence[str] | None = None, *,
                   reliable: bool = True) -> dict[str, float]:
    """Channels (of ``channels``, default all) whose estimated gain is <= 0 dB, with their gain.

    ``reliable``: only the channels whose estimate is reliable (the guard's set), or with
    ``False`` only those whose estimate is not.
    """
    run = run_folder_of(model)
    record = (read_quality(run) if run is not None else None) or {}
    return {ch: float(v["gain_db"]) for ch, v in record.get("channels", {}).items()
            if v.get("gain_db") is not None and v["gain_db"] <= 0 and bool(v.get("reliable", True)) == reliable
            and (channels is None or ch in channels)}


def describe_worse(model: str | Path, worse: dict[str, float]) -> str:
    """One sentence naming the channels and their gain."""
    listed = ", ".join(f"{ch} ({g:+.1f} dB)" for ch, g in worse.items())
    return (f"model {model}: estimated gain <= 0 dB for channel(s) {listed} "
            f"({QUALITY_JSON}): denoising would not bring these channels closer to the truth than the raw images")


def check_gain_before_predict(config: Any) -> None:
    """Stop a pipeline before predict when the model makes a channel worse.

    Reads ``quality.json`` of the model's run folder (``predict.model``, default
    ``paths.run_dir``); nothing is checked when there is none (a BMZ zip, a bare checkpoint,
    a run not yet estimated).

    Raises
    ------
    HarmfulModelError
        If a channel selected for prediction has an estimated gain <= 0 dB and
        ``predict.allow_worse`` is false; the message names the channels and what to do.
    """
    model = config.predict.model or config.paths.run_dir
    worse = worse_channels(model)
    if not worse:
        return
    if getattr(config.predict, "allow_worse", False):
        log.warning("%s; predicting anyway (predict.allow_worse)", describe_worse(model, worse))
        return
    raise HarmfulModelError(f"{describe_worse(model, worse)}. Not predicting: {ADVICE}")


def warn_worse_channels(model: str | Path, channels: Sequence[str]) -> dict[str, float]:
    """Warn (logger ``jumpdenoise.predict``) when the model's estimated gain is <= 0 dB on a channel.

    Returns the channels warned about, with their gain (``{}`` when none, or when the model's
    run folder has no ``quality.json``).
    """
    predict_log = logging.getLogger("jumpdenoise.predict")
    worse = worse_channels(model, channels)
    if worse:
        predict_log.warning("%s; the denoised channel(s) will be worse than the raw ones. %s",
                            describe_worse(model, worse), ADVICE[0].upper() + ADVICE[1:])
    doubtful = worse_channels(model, channels, reliable=False)
    if doubtful:
        predict_log.warning("%s, but the noise could not be measured reliably on these channels (spatially "
                            "correlated noise or strong fine structure): not guarded", describe_worse(model, doubtful))
    return worse
