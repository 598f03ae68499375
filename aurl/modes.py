"""One spec per model mode: everything that differs between transformer, vae and vae_gan lives here.

A mode says which model to build, which loss terms it may balance, its objective, the items it trains
and is evaluated on, how its negative log-likelihood (or bound) is scored, and what generation decodes
with. Training, evaluation and generation ask `MODES[config.model.mode]` and never test the mode
themselves, so a new mode is a new spec.
"""

from __future__ import annotations

from collections.abc import Callable

import miditok
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from aurl.config import AugmentConfig, Config, ModelConfig
from aurl.data.dataset import IGNORE_INDEX, PreparedDataset, SegmentDataset, WindowDataset
from aurl.data.layout import run_layout, task_ids, time_ordered
from aurl.data.multitrack import is_multitrack
from aurl.data.tasks import TaskDataset
from aurl.data.timed_tasks import TimedTaskDataset
from aurl.data.tokenize import bar_token_ids
from aurl.errors import ConfigError
from aurl.models.balance import LossBalance
from aurl.models.transformer import Transformer
from aurl.models.vae import VAE
from aurl.training.objectives import LanguageModelObjective, Objective, VAEGANObjective, VAEObjective

Batch = dict[str, torch.Tensor]


class LanguageModelMode:
    """mode transformer: a decoder-only model over windows of a piece (multitrack: task windows)."""

    name = "transformer"
    balanced_terms: tuple[str, ...] = ("recon",)
    latent = False

    def model(self, cfg: ModelConfig, vocab_size: int, bar_ids: list[int] | None) -> nn.Module:
        return Transformer(cfg, vocab_size, bar_ids)

    def objective(self, config: Config, model: nn.Module, vocab_size: int, weights: torch.Tensor | None) -> Objective:
        return LanguageModelObjective(model, weights)

    def opening(self, tokenizer: miditok.MusicTokenizer) -> list[int]:
        """What follows BOS in a piece written from nothing (or a primer): a time-ordered run's Task_Free."""
        return task_ids(tokenizer, "free")

    def datasets(
        self, config: Config, data: PreparedDataset, augment: AugmentConfig | None
    ) -> tuple[Dataset, Dataset | None]:
        """Training items and validation items (None: the dataset holds no validation pieces)."""
        seed, seq_len = config.train.seed, config.data.seq_len
        if is_multitrack(data.tokenizer):
            return (
                TaskDataset(data.pieces("train"), data.tokenizer, config.data, True, augment, seed),
                _valid(data, lambda pieces: TaskDataset(pieces, data.tokenizer, config.data, False)),
            )
        opening = self.opening(data.tokenizer)
        valid = _valid(data, lambda pieces: WindowDataset(pieces, data.tables, seq_len, False, opening=opening))
        if config.data.cocreation:
            if not time_ordered(data.tokenizer) or data.tokenizer.is_trained:
                raise ConfigError(
                    "data.tasks: accompany and infill need tokenizer.kind REMI with use_programs and no BPE (or "
                    "MMM); train this one with data.tasks={continue: 1}"
                )
            layout = run_layout(data.tokenizer, config.data)
            return TimedTaskDataset(data.pieces("train"), data.tables, layout, config.data, True, augment, seed), valid
        return WindowDataset(data.pieces("train"), data.tables, seq_len, True, augment, seed, opening), valid

    def evaluation_items(self, config: Config, data: PreparedDataset, split: str) -> Dataset:
        """Items that hold every token of the split once, as a likelihood needs."""
        if is_multitrack(data.tokenizer):
            return TaskDataset(data.pieces(split), data.tokenizer, config.data, False)
        opening = self.opening(data.tokenizer)
        return WindowDataset(data.pieces(split), data.tables, config.data.seq_len, False, opening=opening)

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch["input_ids"])

    def negative_log_likelihood(
        self, model: nn.Module, batch: Batch, generator: torch.Generator
    ) -> tuple[float, float]:
        """(summed cross-entropy of the batch's targets, KL of its latents: 0 here), in nats."""
        return _summed_ce(self.logits(model, batch), batch["targets"]), 0.0

    def decoder(self, model: nn.Module, z: torch.Tensor | None) -> nn.Module:
        """The module the sampler drives: (ids, cache) → logits."""
        return model

    def prior(self, model: nn.Module, num: int, generator: torch.Generator, temperature: float):
        """Latents to write `num` pieces from (None: the model has none)."""
        return None


class LatentMode(LanguageModelMode):
    """mode vae: a global latent per bar-aligned segment, read by an encoder, conditioning the decoder."""

    name = "vae"
    balanced_terms = ("recon", "kl")
    latent = True

    def model(self, cfg: ModelConfig, vocab_size: int, bar_ids: list[int] | None) -> nn.Module:
        return VAE(cfg, vocab_size, bar_ids)

    def objective(self, config: Config, model: nn.Module, vocab_size: int, weights: torch.Tensor | None) -> Objective:
        return VAEObjective(model, config.vae, weights)

    def opening(self, tokenizer: miditok.MusicTokenizer) -> list[int]:
        """Segments open with BOS alone: the code z, not a token, says what to write."""
        return []

    def _single_stream(self, data: PreparedDataset) -> None:
        if is_multitrack(data.tokenizer):
            raise ConfigError(
                f"model.mode: {self.name} reads single-stream segments; use a tokenizer.kind other than MMM"
            )

    def datasets(
        self, config: Config, data: PreparedDataset, augment: AugmentConfig | None
    ) -> tuple[Dataset, Dataset | None]:
        self._single_stream(data)
        bars, n, seq_len = bar_token_ids(data.tokenizer), config.data.segment_bars, config.data.seq_len
        return (
            SegmentDataset(data.pieces("train"), data.tables, bars, n, seq_len, True, augment, config.train.seed),
            _valid(data, lambda pieces: SegmentDataset(pieces, data.tables, bars, n, seq_len, False)),
        )

    def evaluation_items(self, config: Config, data: PreparedDataset, split: str) -> Dataset:
        self._single_stream(data)
        bars = bar_token_ids(data.tokenizer)
        return SegmentDataset(
            data.pieces(split), data.tables, bars, config.data.segment_bars, config.data.seq_len, False, whole=True
        )

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch["input_ids"], batch["mask"])[0]

    def negative_log_likelihood(
        self, model: nn.Module, batch: Batch, generator: torch.Generator
    ) -> tuple[float, float]:
        """The negative ELBO's two terms: reconstruction with z drawn from the posterior, and the whole KL."""
        mu, logvar = model.encode(batch["input_ids"], batch["mask"])
        z = mu + torch.randn(mu.shape, generator=generator) * (0.5 * logvar).exp()
        kl = float(0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum())
        return _summed_ce(model.decode(batch["input_ids"], z), batch["targets"]), kl

    def decoder(self, model: nn.Module, z: torch.Tensor | None) -> nn.Module:
        return model.conditioned(z)

    def prior(self, model: nn.Module, num: int, generator: torch.Generator, temperature: float):
        """z from N(0, I), scaled by temperature."""
        device = next(model.parameters()).device
        return torch.randn(num, model.cfg.latent_dim, generator=generator, device=device) * temperature


class AdversarialMode(LatentMode):
    """mode vae_gan: the VAE trained against a critic as well."""

    name = "vae_gan"
    balanced_terms = ("recon", "kl", "feature_matching")  # the hinge term can be negative: never balanced

    def objective(self, config: Config, model: nn.Module, vocab_size: int, weights: torch.Tensor | None) -> Objective:
        return VAEGANObjective(model, config.vae, config.gan, vocab_size, config.model.context, weights)


MODES: dict[str, LanguageModelMode] = {m.name: m for m in (LanguageModelMode(), LatentMode(), AdversarialMode())}


def build_model(cfg: ModelConfig, vocab_size: int, bar_ids: list[int] | None = None) -> nn.Module:
    """The model of `cfg.mode`; bar_ids (the tokenizer's Bar tokens) serve hierarchical attention.
    With loss_balance uncertainty, the learned loss weights are the submodule `loss_balance`, so the
    optimizer, DDP/FSDP and checkpoints treat them like every other weight."""
    mode = MODES[cfg.mode]
    model = mode.model(cfg, vocab_size, bar_ids)
    if cfg.loss_balance == "uncertainty":
        model.loss_balance = LossBalance(mode.balanced_terms)
    return model


def build_objective(config: Config, model: nn.Module, vocab_size: int, token_weights=None) -> Objective:
    """The objective of config.model.mode; token_weights (one per token id) weigh the cross-entropy."""
    if token_weights is not None:
        token_weights = torch.as_tensor(token_weights, device=next(model.parameters()).device)
    return MODES[config.model.mode].objective(config, model, vocab_size, token_weights)


def _valid(data: PreparedDataset, items: Callable[[list[np.ndarray]], Dataset]) -> Dataset | None:
    """Validation items from the valid pieces, or None where there are none (a folder of one or two files)."""
    pieces = data.pieces("valid")
    return items(pieces) if pieces else None


def _summed_ce(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"))
