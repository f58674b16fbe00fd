"""The request bodies of the reader-study API (pydantic, extra fields forbidden)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

TOKEN_PATTERN = r"^[A-Za-z0-9_-]{20,64}$"
ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$"


class ViewportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(ge=1, le=100_000)
    height: int = Field(ge=1, le=100_000)
    device_pixel_ratio: float = Field(default=1.0, gt=0, le=16)


class ScoresIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scores: dict[Annotated[str, Field(max_length=32)], Annotated[int, Field(strict=True, ge=1, le=5)]] = (
        Field(max_length=64)
    )
    viewport: ViewportIn
    trial_seconds: float | None = Field(default=None, ge=0, le=86_400)  # time from display to submit


class EnrolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alias: str = Field(pattern=ALIAS_PATTERN)
