"""Configuration of N2V training (owned by the train stage)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TrainConfig(BaseModel):
    """Placeholder, filled by the training stage."""

    model_config = ConfigDict(extra="allow")
