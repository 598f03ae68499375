"""One objective per model mode: turns a batch into the loss to minimise and the metrics to log."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aurl.config import Config, VAEConfig
from aurl.data.dataset import IGNORE_INDEX


class LanguageModelObjective:
    """Next-token cross-entropy over unpadded positions (mode: transformer)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.model(batch["input_ids"])
        targets = batch["targets"]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        valid = targets != IGNORE_INDEX
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == targets)[valid].float().mean()
        return {"loss": loss, "accuracy": accuracy}


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per latent dimension, averaged over the batch (nats)."""
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).mean(0)


def beta_at(step: int, cfg: VAEConfig) -> float:
    """KL weight at a step: constant, or annealed from 0 over anneal_steps (linear, cosine), or cyclical
    (a linear ramp over the first half of each anneal_steps-long cycle, then held; Fu et al. 2019)."""
    p = min(1.0, step / cfg.anneal_steps)
    if cfg.anneal == "linear":
        return cfg.beta * p
    if cfg.anneal == "cosine":
        return cfg.beta * 0.5 * (1 - math.cos(math.pi * p))
    if cfg.anneal == "cyclical":
        return cfg.beta * min(1.0, 2 * (step % cfg.anneal_steps) / cfg.anneal_steps)
    return cfg.beta


class VAEObjective:
    """Reconstruction cross-entropy + beta x KL, with free bits per dimension (mode: vae)."""

    def __init__(self, model: nn.Module, cfg: VAEConfig):
        self.model, self.cfg = model, cfg
        self.step = 0

    def set_step(self, step: int) -> None:
        """The trainer's step, for the KL annealing schedule."""
        self.step = step

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits, mu, logvar = self.model(batch["input_ids"], batch["mask"])
        targets = batch["targets"]
        recon = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        kl = kl_per_dim(mu.float(), logvar.float())
        beta = beta_at(self.step, self.cfg)
        # Free bits: a dimension's KL below the floor costs nothing, so the encoder may use it freely.
        loss = recon + beta * kl.clamp(min=self.cfg.free_bits).sum()
        with torch.no_grad():
            valid = targets != IGNORE_INDEX
            accuracy = (logits.argmax(-1) == targets)[valid].float().mean()
            active = (mu.float().var(0) > 0.01).sum().float() if mu.shape[0] > 1 else torch.zeros(())
        return {
            "loss": loss,
            "recon": recon.detach(),
            "kl": kl.sum().detach(),
            "kl_max_dim": kl.max().detach(),
            "beta": torch.tensor(beta),
            "active_units": active,
            "accuracy": accuracy,
        }


def build_objective(config: Config, model: nn.Module) -> LanguageModelObjective | VAEObjective:
    if config.model.mode == "transformer":
        return LanguageModelObjective(model)
    if config.model.mode == "vae":
        return VAEObjective(model, config.vae)
    raise ValueError(f"model.mode {config.model.mode!r} has no objective")
