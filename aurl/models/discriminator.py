"""Sequence critic for mode vae_gan: reads token sequences as (relaxed) one-hot vectors and scores them.

Every linear map is spectrally normalised (torch.nn.utils.parametrizations.spectral_norm), which bounds
the critic's Lipschitz constant and keeps adversarial training stable.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from aurl.models.layers import Block, Rotary


class Critic(nn.Module):
    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, context: int):
        super().__init__()
        self.inp = nn.Linear(vocab_size, d_model, bias=False)  # one-hot (or soft) tokens → d_model
        self.rotary = Rotary(d_model // n_heads, context)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, 4 * d_model, 0.0) for _ in range(n_layers))
        self.out = nn.Linear(d_model, 1)
        for module in list(self.modules()):
            if isinstance(module, nn.Linear):
                spectral_norm(module)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """tokens (batch, time, vocab), mask (batch, time) → (score (batch,), pooled features per block)."""
        x = self.inp(tokens)
        weights = mask[..., None].float() / mask.sum(1, keepdim=True)[..., None].clamp(min=1)
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x, self.rotary, None, i)
            features.append((x * weights).sum(1))
        return self.out(features[-1]).squeeze(-1), features
