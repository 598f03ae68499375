"""The base of every config section: unknown keys are refused and assigned values validated, so a typo or a bad
value fails before any work starts with a message that names the key (aurl.config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
