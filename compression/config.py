from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CompressionConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    methods: list[Literal["int8_dynamic"]] = Field(
        default=["int8_dynamic"], description="variants derived from the trained model")
