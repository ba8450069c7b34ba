from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bento_name: str = Field(default="conveyor-lm", pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    max_new_tokens_limit: int = Field(default=256, ge=1)
