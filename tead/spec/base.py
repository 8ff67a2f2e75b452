"""The base of the workflow file's models: strict, frozen pydantic models."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"


class Model(BaseModel):
    """Strict base: unknown keys are errors (they are usually typos)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
