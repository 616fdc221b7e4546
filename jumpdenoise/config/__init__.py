"""One pydantic configuration tree for the whole pipeline, loaded from YAML.

Sections: ``source`` (what to read), ``paths`` (where outputs go), ``convert``,
``train``, ``predict``, ``executor``. Relative paths in a YAML file are resolved against
the file's folder. Errors name the offending field and value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jumpdenoise.config.convert import ConvertConfig
from jumpdenoise.config.evaluate import EvaluateConfig
from jumpdenoise.config.executor import ExecutorConfig, SlurmProfile
from jumpdenoise.config.predict import PredictConfig
from jumpdenoise.config.source import SourceConfig
from jumpdenoise.config.train import TrainConfig
from jumpdenoise.errors import ConfigError

__all__ = [
    "ConvertConfig", "ExecutorConfig", "JumpDenoiseConfig", "PathsConfig", "PredictConfig",
    "SlurmProfile", "SourceConfig", "TrainConfig", "load_config", "load_profile",
]


class PathsConfig(BaseModel):
    """Where a pipeline writes.

    Attributes
    ----------
    workdir
        Folder of the run; the other paths default to names inside it.
    raw_plate
        Converted OME-Zarr plate (default ``<workdir>/raw.zarr``).
    run_dir
        Training run folder (default ``<workdir>/model``).
    denoised_plate
        Denoised OME-Zarr plate (default ``<workdir>/denoised.zarr``).
    """

    model_config = ConfigDict(extra="forbid")

    workdir: Path = Path("jumpdenoise-run")
    raw_plate: Path | None = None
    run_dir: Path | None = None
    denoised_plate: Path | None = None

    @model_validator(mode="after")
    def _defaults(self) -> "PathsConfig":
        if self.raw_plate is None:
            self.raw_plate = self.workdir / "raw.zarr"
        if self.run_dir is None:
            self.run_dir = self.workdir / "model"
        if self.denoised_plate is None:
            self.denoised_plate = self.workdir / "denoised.zarr"
        return self


class JumpDenoiseConfig(BaseModel):
    """The root of the configuration tree."""

    model_config = ConfigDict(extra="forbid")

    source: SourceConfig | None = None
    paths: PathsConfig = Field(default_factory=PathsConfig)
    convert: ConvertConfig = Field(default_factory=ConvertConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    evaluate: EvaluateConfig | None = None


def _model_names(model: type[BaseModel]) -> set[str]:
    """Class names of the configuration models (pydantic puts them in union error paths)."""
    names = {model.__name__} if model.__module__.startswith("jumpdenoise.config") else set()
    for sub in model.__subclasses__():
        names |= _model_names(sub)
    return names


def _format_validation_error(err: ValidationError, origin: str) -> str:
    """One line per error, naming the dotted field and the value.

    A value that may be one of several types (``executor.profile``: a path or an inline
    profile) fails every branch; the branches it plainly is not (``Path`` for a mapping) are
    left out, and the branch's class name is dropped from the field's name.
    """
    models = _model_names(BaseModel)
    errors = err.errors()
    specific = [e for e in errors if not any("[" in str(p) for p in e["loc"])]
    lines = [f"invalid configuration in {origin}:"]
    for e in specific or errors:
        loc = ".".join(str(p) for p in e["loc"] if str(p) not in models) or "(root)"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {loc}: {e['msg']}{shown}")
    return "\n".join(lines)


def _resolve_paths(data: Any, base: Path, keys: tuple[str, ...]) -> Any:
    """Resolve relative path strings under ``keys`` against ``base`` (recursively)."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k in keys and isinstance(v, str) and v and not Path(v).is_absolute() and "://" not in v:
                out[k] = str((base / v).resolve())
            else:
                out[k] = _resolve_paths(v, base, keys)
        return out
    if isinstance(data, list):
        return [_resolve_paths(v, base, keys) for v in data]
    return data


PATH_KEYS = ("path", "channel_map_file", "workdir", "raw_plate", "run_dir", "denoised_plate", "profile", "log_dir",
             "plate", "model", "truth")


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> JumpDenoiseConfig:
    """Load and validate a YAML configuration.

    Parameters
    ----------
    path
        YAML file; ``None`` gives the defaults.
    overrides
        Nested dict merged over the file's content before validation.

    Raises
    ------
    ConfigError
        If the file is missing, not YAML, or a value is invalid (the message names it).
    """
    data: dict = {}
    origin = "defaults"
    if path is not None:
        p = Path(path)
        origin = str(p)
        if not p.is_file():
            raise ConfigError(f"configuration file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at top level, got {type(data).__name__}")
        data = _resolve_paths(data, p.parent.resolve(), PATH_KEYS)
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        return JumpDenoiseConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def load_profile(profile: Path | SlurmProfile | None) -> SlurmProfile:
    """Return a :class:`SlurmProfile` from a YAML path, an inline profile, or defaults."""
    if profile is None:
        return SlurmProfile()
    if isinstance(profile, SlurmProfile):
        return profile
    p = Path(profile)
    if not p.is_file():
        raise ConfigError(f"SLURM profile not found: {p}")
    try:
        return SlurmProfile.model_validate(yaml.safe_load(p.read_text()) or {})
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, str(p))) from None


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out
