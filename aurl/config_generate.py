"""The generate section of the config tree: sampling settings, and what a request of each task takes where
it says nothing. Importable from aurl.config like every section."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from aurl.config_section import Section


class GenerateConfig(Section):
    num: int = Field(4, ge=1)
    max_tokens: int = Field(1024, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0, description="0 keeps every token")
    top_p: float = Field(1.0, gt=0, le=1)
    min_p: float = Field(0.0, ge=0, lt=1, description="drop tokens below min_p x the top token's probability")
    repetition_penalty: float = Field(1.0, ge=1, description="CTRL's penalty on tokens in the recent window")
    repetition_window: int = Field(64, ge=1, description="tokens the repetition penalty looks back over")
    min_tokens: int = Field(0, ge=0, description="no end token before this many new tokens")
    min_bars: int | None = Field(
        None, ge=1, description="no end token before the piece's min_bars-th bar (unless max_tokens runs out first)"
    )
    max_bars: int | None = Field(None, ge=1, description="stop a piece before its (max_bars + 1)-th bar")
    constrained: bool = Field(True, description="sample only tokens the tokenizer's grammar allows next")
    batch_size: int = Field(8, ge=1, description="pieces sampled together")
    primer_bars: int = Field(4, ge=1, description="bars of a --primer file the piece continues")
    meter: str = Field(
        "hold",
        description="hold: every bar keeps the first bar's time signature (a primer's or a song's); free: the "
        "model may change it at any bar; or one to hold, e.g. 3/4",
    )
    sweeps: int = Field(
        0,
        ge=0,
        description="co-creation: revision sweeps after the first pass, each rewriting every span of one or two bars "
        "of every written track with everything else given on both sides, the temperature annealed (pseudo-Gibbs)",
    )
    keep_sweeps: bool = Field(False, description="co-creation: also keep each take as it was before each sweep")
    seed: int = 0
    # What a request of one task (generate, continue, accompany, infill, encode, interpolate) takes where it
    # says nothing, over the settings above: the settings that measured best for it (docs/benchmarks.md).
    # Harmonisations cooler than free pieces: fewer voice-leading faults (docs/writing-music.md).
    tasks: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"accompany": {"temperature": 0.7}, "infill": {"temperature": 0.7}},
        description="per task, the settings a request of it takes where it gives none",
    )

    @field_validator("meter")
    @classmethod
    def _meter(cls, value: str) -> str:
        if not re.fullmatch(r"hold|free|[1-9][0-9]*/[1-9][0-9]*", value):
            raise ValueError("expected hold, free or a time signature such as 3/4")
        return value

    @model_validator(mode="before")
    @classmethod
    def _passes(cls, data: Any) -> Any:
        """A run from before sweeps saved `passes`, its first pass counted: N passes are N - 1 sweeps."""
        if isinstance(data, dict) and "passes" in data:
            if "sweeps" in data:
                raise ValueError("passes: now sweeps, the revision sweeps after the first pass (N passes: N - 1)")
            data = dict(data)
            passes = data.pop("passes")
            data["sweeps"] = max(0, passes - 1) if isinstance(passes, int) else passes
        return data

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        known = set(cls.model_fields) - {"tasks"}
        for task, settings in value.items():
            unknown = sorted(set(settings) - known)
            if unknown:
                raise ValueError(f"{task}: {', '.join(unknown)} not a generate setting")
        return value

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        if self.min_bars is not None and self.max_bars is not None and self.min_bars > self.max_bars:
            raise ValueError(f"generate.min_bars ({self.min_bars}) must not exceed generate.max_bars ({self.max_bars})")
        if self.min_tokens > self.max_tokens:
            raise ValueError(
                f"generate.min_tokens ({self.min_tokens}) must not exceed generate.max_tokens ({self.max_tokens})"
            )
        return self

    z_temperature: float = Field(1.0, gt=0, description="vae: scale of z drawn from the prior")
    steps: int = Field(8, ge=2, description="vae: files written by an interpolation")
