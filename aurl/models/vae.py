"""Variational autoencoder over bar-aligned segments (mode: vae).

A bidirectional transformer encoder (torch's nn.TransformerEncoder) reads the segment, mean-pools its
real tokens and gives the mean and log-variance of a global latent z. The decoder is the causal
Transformer of mode `transformer`, conditioned on z as model.latent_injection says: projected to d_model
and added at every position ("add"), projected to latent_prefix vectors that precede the first token
("prefix"; the decoder's context grows by them), or both.
"""

from __future__ import annotations

import torch
from torch import nn

from aurl.config import ModelConfig
from aurl.models.transformer import Transformer


class VAE(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, bar_ids: list[int] | None = None):
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        n_prefix = cfg.latent_prefix if cfg.latent_injection != "add" else 0
        self.decoder = Transformer(cfg.model_copy(update={"context": cfg.context + n_prefix}), vocab_size, bar_ids)
        self.positions = nn.Embedding(cfg.context, cfg.d_model)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model,
            cfg.n_heads,
            int(cfg.mlp_ratio * cfg.d_model),
            cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.encoder_layers, enable_nested_tensor=False)
        self.to_latent = nn.Linear(cfg.d_model, 2 * cfg.latent_dim)
        for layer in (self.positions, self.to_latent):
            nn.init.normal_(layer.weight, std=0.02)
        nn.init.zeros_(self.to_latent.bias)
        self.from_latent = nn.Linear(cfg.latent_dim, cfg.d_model) if cfg.latent_injection != "prefix" else None
        self.to_prefix = nn.Linear(cfg.latent_dim, n_prefix * cfg.d_model) if n_prefix else None
        # z enters at zero and grows as it proves useful: at PyTorch's default scale its noise (z ~ N(0, 1)
        # before the encoder has learned anything) drowns the token embeddings and slows learning.
        for layer in (self.from_latent, self.to_prefix):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> float:
        return (
            6 * self.num_parameters() + 12 * (self.cfg.n_layers + self.cfg.encoder_layers) * self.cfg.d_model * seq_len
        )

    def activation_bytes(self, batch: int, seq_len: int, bytes_per_value: int = 4) -> float:
        layers = self.cfg.n_layers + self.cfg.encoder_layers
        return 17 * seq_len * batch * self.cfg.d_model * bytes_per_value * layers

    def freeze(self, embeddings: bool, blocks: int) -> int:
        """The decoder's embedding and first blocks, as Transformer.freeze; the encoder keeps learning."""
        return self.decoder.freeze(embeddings, blocks)

    def set_activation_checkpointing(self, every: int) -> None:
        self.decoder.set_activation_checkpointing(every)

    def encode(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (batch, latent_dim), of the segments in input_ids; mask marks real tokens."""
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = self.encoder(self.decoder.embed(input_ids) + self.positions(pos), src_key_padding_mask=~mask)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        mu, logvar = self.to_latent(pooled).chunk(2, dim=-1)
        return mu, logvar.clamp(-12, 8)

    def decode(self, input_ids: torch.Tensor, z: torch.Tensor, cache=None) -> torch.Tensor:
        """Next-token logits of the decoder conditioned on z; with a cache, input_ids continue it."""
        condition = self.from_latent(z) if self.from_latent is not None else None
        prefix = None
        if self.to_prefix is not None and (cache is None or cache.length == 0):  # the prefix opens the sequence
            prefix = self.to_prefix(z).unflatten(-1, (self.cfg.latent_prefix, self.cfg.d_model))
        return self.decoder(input_ids, cache, condition=condition, prefix=prefix)

    def new_cache(self, batch: int, device=None, dtype=None):
        return self.decoder.new_cache(batch, device, dtype)

    def conditioned(self, z: torch.Tensor) -> LatentDecoder:
        """The decoder with z fixed, in the shape the sampler drives: (ids, cache) → logits."""
        return LatentDecoder(self, z)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(logits, mu, logvar): reconstruct input_ids from z drawn by the reparameterisation trick."""
        mu, logvar = self.encode(input_ids, mask)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(input_ids, z), mu, logvar


class LatentDecoder(nn.Module):
    def __init__(self, vae: VAE, z: torch.Tensor):
        super().__init__()
        self.vae, self.z, self.cfg = vae, z, vae.cfg

    def new_cache(self, batch: int):
        return self.vae.new_cache(batch)

    def forward(self, input_ids: torch.Tensor, cache=None) -> torch.Tensor:
        return self.vae.decode(input_ids, self.z, cache)
