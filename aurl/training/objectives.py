"""The objectives of the model modes (chosen in aurl.modes): a batch → the loss to minimise and metrics to log."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from aurl.config import GANConfig, VAEConfig
from aurl.data.dataset import IGNORE_INDEX
from aurl.models.discriminator import Critic
from aurl.training.distributed import unwrap

Objective = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def token_loss(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy over unpadded targets; with per-token-id weights, their weighted mean."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), weight=weight, ignore_index=IGNORE_INDEX)


def balance(model: nn.Module, losses: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """The loss terms as the model's learned uncertainty weights say (model.loss_balance uncertainty),
    else unchanged; and the weights to log."""
    balancer = getattr(unwrap(model), "loss_balance", None)
    return balancer(losses) if balancer is not None else (losses, {})


class LanguageModelObjective:
    """Next-token cross-entropy over unpadded positions (mode: transformer)."""

    def __init__(self, model: nn.Module, token_weights: torch.Tensor | None = None):
        self.model, self.token_weights = model, token_weights

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.model(batch["input_ids"])
        targets = batch["targets"]
        recon = token_loss(logits, targets, self.token_weights)
        terms, weights = balance(self.model, {"recon": recon})
        valid = targets != IGNORE_INDEX
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == targets)[valid].float().mean()
        out = {"loss": terms["recon"], "accuracy": accuracy, **weights}
        if weights or self.token_weights is not None:  # then the loss is not the plain cross-entropy
            out["ce"] = F.cross_entropy(
                logits.flatten(0, 1).float().detach(), targets.flatten(), ignore_index=IGNORE_INDEX
            )
        return out


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

    def __init__(self, model: nn.Module, cfg: VAEConfig, token_weights: torch.Tensor | None = None):
        self.model, self.cfg, self.token_weights = model, cfg, token_weights
        self.step = 0

    def set_step(self, step: int) -> None:
        """The trainer's step, for the KL annealing schedule."""
        self.step = step

    def _vae_terms(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(loss and metrics, decoder logits)."""
        logits, mu, logvar = self.model(batch["input_ids"], batch["mask"])
        targets = batch["targets"]
        recon = token_loss(logits, targets, self.token_weights)
        kl = kl_per_dim(mu.float(), logvar.float())
        beta = beta_at(self.step, self.cfg)
        valid = targets != IGNORE_INDEX
        # The ELBO per token: recon is a mean over tokens, so the segment's KL is spread over its tokens
        # (added whole, it would weigh ~length times too much and collapse the posterior).
        # Free bits: a dimension's KL below the floor costs nothing, so the encoder may use it freely.
        tokens = valid.sum(1).float().mean().clamp(min=1)
        terms, weights = balance(self.model, {"recon": recon, "kl": kl.clamp(min=self.cfg.free_bits).sum() / tokens})
        loss = terms["recon"] + beta * terms["kl"]
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == targets)[valid].float().mean()
            active = (mu.float().var(0) > 0.01).sum().float() if mu.shape[0] > 1 else torch.zeros(())
        metrics = {
            "loss": loss,
            "recon": recon.detach(),
            "kl": kl.sum().detach(),
            **{f"kl_dim/{i:02d}": v for i, v in enumerate(kl.detach())},
            "beta": torch.tensor(beta),
            "active_units": active,
            "accuracy": accuracy,
            **weights,
        }
        return metrics, logits

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._vae_terms(batch)[0]


class VAEGANObjective(VAEObjective):
    """The VAE objective plus an adversary (mode vae_gan).

    Each call first takes one critic step (hinge loss, optional R1 penalty, its own AdamW) on real
    sequences as one-hot vectors against decoded ones as straight-through Gumbel-softmax samples, then
    returns the generator's loss: reconstruction + beta x KL + w(step) x (adversarial + feature matching),
    where w grows from 0 after gan.adv_start. Gradients reach the decoder through the relaxed samples.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: VAEConfig,
        gan: GANConfig,
        vocab_size: int,
        context: int,
        token_weights: torch.Tensor | None = None,
    ):
        super().__init__(model, cfg, token_weights)
        self.gan = gan
        device = next(model.parameters()).device
        self.critic = Critic(vocab_size, gan.critic_d_model, gan.critic_layers, gan.critic_heads, context).to(device)
        self.critic_opt = torch.optim.AdamW(self.critic.parameters(), lr=gan.critic_lr, betas=gan.critic_betas)

    def adv_weight(self) -> float:
        return self.gan.adv_weight * min(1.0, max(0, self.step - self.gan.adv_start) / self.gan.adv_warmup)

    def state_dict(self) -> dict:
        return {"critic": self.critic.state_dict(), "critic_opt": self.critic_opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.critic_opt.load_state_dict(state["critic_opt"])

    def _critic_step(self, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        r1 = self.gan.r1_gamma > 0
        # R1 differentiates twice; the fused attention kernels have no double backward, the math one has.
        with sdpa_kernel(SDPBackend.MATH) if r1 else nullcontext():
            real_score, _ = self.critic(real.requires_grad_(r1), mask)
        fake_score, _ = self.critic(fake, mask)
        loss = F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()
        if r1:
            (grad,) = torch.autograd.grad(real_score.sum(), real, create_graph=True)
            loss = loss + 0.5 * self.gan.r1_gamma * grad.square().sum((1, 2)).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        if dist.is_available() and dist.is_initialized():  # the critic is not DDP-wrapped: average by hand
            for p in self.critic.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= dist.get_world_size()
        self.critic_opt.step()
        accuracy = ((real_score > 0).float().mean() + (fake_score < 0).float().mean()) / 2
        return {"critic_loss": loss.detach(), "critic_accuracy": accuracy.detach()}

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out, logits = self._vae_terms(batch)
        mask = batch["targets"] != IGNORE_INDEX
        real = F.one_hot(batch["targets"].clamp(min=0), logits.shape[-1]).float()
        # Straight-through Gumbel-softmax: one-hot forward, soft gradient backward.
        fake = F.gumbel_softmax(logits.float(), tau=self.gan.gumbel_tau, hard=True)
        if torch.is_grad_enabled():
            out.update(self._critic_step(real, fake.detach(), mask))
        else:  # evaluation: how well the critic tells them apart, without training it
            real_score, fake_score = self.critic(real, mask)[0], self.critic(fake, mask)[0]
            out["critic_accuracy"] = ((real_score > 0).float().mean() + (fake_score < 0).float().mean()) / 2
        self.critic.requires_grad_(False)  # the generator's terms must not train the critic
        fake_score, fake_features = self.critic(fake, mask)
        with torch.no_grad():
            _, real_features = self.critic(real, mask)
        self.critic.requires_grad_(True)
        adversarial = -fake_score.mean()
        matching = sum(F.mse_loss(f, r) for f, r in zip(fake_features, real_features, strict=True))
        terms, weights = balance(self.model, {"feature_matching": matching})
        out["loss"] = out["loss"] + self.adv_weight() * (adversarial + self.gan.fm_weight * terms["feature_matching"])
        out.update(adversarial=adversarial.detach(), feature_matching=matching.detach(), **weights)
        return out
