"""Model families, chosen by `model.mode`."""

from __future__ import annotations

from torch import nn

from aurl.config import ModelConfig
from aurl.models.transformer import Transformer
from aurl.models.vae import VAE


def build_model(cfg: ModelConfig, vocab_size: int, bar_ids: list[int] | None = None) -> nn.Module:
    """The model of `cfg.mode`; bar_ids (the tokenizer's Bar tokens) serve hierarchical attention."""
    if cfg.mode == "transformer":
        return Transformer(cfg, vocab_size, bar_ids)
    if cfg.mode in ("vae", "vae_gan"):  # vae_gan: the same model, trained against a critic
        return VAE(cfg, vocab_size, bar_ids)
    raise ValueError(f"model.mode {cfg.mode!r} has no model")
