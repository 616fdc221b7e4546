"""Configuration of tiled prediction (owned by the predict stage)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PredictConfig(BaseModel):
    """Placeholder, filled by the predict stage."""

    model_config = ConfigDict(extra="allow")
