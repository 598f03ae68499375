"""Model families, chosen by `model.mode`."""

from __future__ import annotations

from torch import nn

from aurl.config import ModelConfig
from aurl.models.transformer import Transformer


def build_model(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    if cfg.mode == "transformer":
        return Transformer(cfg, vocab_size)
    raise ValueError(f"model.mode {cfg.mode!r} has no model")
