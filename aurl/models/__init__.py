"""Model families, chosen by `model.mode`."""

from __future__ import annotations

from torch import nn

from aurl.config import ModelConfig
from aurl.models.balance import BALANCED_TERMS, LossBalance
from aurl.models.transformer import Transformer
from aurl.models.vae import VAE


def build_model(cfg: ModelConfig, vocab_size: int, bar_ids: list[int] | None = None) -> nn.Module:
    """The model of `cfg.mode`; bar_ids (the tokenizer's Bar tokens) serve hierarchical attention.
    With loss_balance uncertainty, the learned loss weights are the submodule `loss_balance`, so the
    optimizer, DDP/FSDP and checkpoints treat them like every other weight."""
    if cfg.mode == "transformer":
        model: nn.Module = Transformer(cfg, vocab_size, bar_ids)
    elif cfg.mode in ("vae", "vae_gan"):  # vae_gan: the same model, trained against a critic
        model = VAE(cfg, vocab_size, bar_ids)
    else:
        raise ValueError(f"model.mode {cfg.mode!r} has no model")
    if cfg.loss_balance == "uncertainty":
        model.loss_balance = LossBalance(BALANCED_TERMS[cfg.mode])
    return model
