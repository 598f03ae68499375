"""Decoder-only transformer (mode: transformer): token embedding, pre-norm blocks, tied output head."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from aurl.config import ModelConfig
from aurl.models.layers import Block, KVCache, Linear, Rotary, WindowKVCache


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, bar_ids: list[int] | None = None):
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        if cfg.attention == "hierarchical" and cfg.global_positions == "bar" and not bar_ids:
            raise ValueError("model.global_positions 'bar' needs the tokenizer's Bar token ids")
        self.register_buffer("bar_ids", torch.tensor(bar_ids or [], dtype=torch.long), persistent=False)
        window = None if cfg.attention == "full" else cfg.window
        head_dim = cfg.d_model // cfg.n_heads
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.rotary = Rotary(head_dim, cfg.context, cfg.rope_base)
        hidden = int(cfg.mlp_ratio * cfg.d_model)
        self.blocks = nn.ModuleList(
            Block(cfg.d_model, cfg.n_heads, hidden, cfg.dropout, window) for _ in range(cfg.n_layers)
        )
        self.norm = nn.RMSNorm(cfg.d_model)
        self.head = Linear(cfg.d_model, vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied: the output layer reads tokens the way the input writes them
        self.checkpoint_every = 0  # recompute every n-th block's activations in backward (0: never)
        self.apply(self._init)
        # GPT-2's scaled init keeps the residual stream's variance flat with depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs (forward + backward) per token: 6 per parameter plus attention (PaLM, app. B)."""
        return 6 * self.num_parameters() + 12 * self.cfg.n_layers * self.cfg.d_model * seq_len

    def activation_bytes(self, batch: int, seq_len: int, bytes_per_value: int = 4) -> float:
        """Estimated activations a training step keeps for backward (Korthikanti et al. 2022, without the
        attention-score term: SDPA does not store scores), for choosing activation checkpointing."""
        per_layer = 17 * seq_len * batch * self.cfg.d_model * bytes_per_value
        return per_layer * self.cfg.n_layers

    def freeze(self, embeddings: bool, blocks: int) -> int:
        """Keep the token embedding (and so the tied output layer) and the first `blocks` blocks as they are
        while training; returns how many weights that freezes."""
        frozen = [*(self.embed.parameters() if embeddings else ()), *self.blocks[:blocks].parameters()]
        for p in frozen:
            p.requires_grad_(False)
        return sum(p.numel() for p in frozen)

    def set_activation_checkpointing(self, every: int) -> None:
        """Recompute the activations of every `every`-th block during backward (0 turns it off)."""
        self.checkpoint_every = every

    def new_cache(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> KVCache | WindowKVCache:
        """An empty KV cache for `batch` sequences: whole-context for full attention, a window (plus the
        global positions) for sliding and hierarchical attention."""
        p = self.embed.weight
        cfg = self.cfg
        args = (cfg.n_layers, batch, cfg.n_heads)
        tail = (cfg.d_model // cfg.n_heads, device or p.device, dtype or p.dtype)
        if cfg.attention == "full":
            return KVCache(*args, cfg.context, *tail)
        max_globals = 0
        if cfg.attention == "hierarchical":
            max_globals = cfg.context if cfg.global_positions == "bar" else cfg.context // cfg.global_every + 1
        return WindowKVCache(*args, cfg.window, max_globals, *tail)

    def global_positions(self, input_ids: torch.Tensor, start: int) -> torch.Tensor | None:
        """(batch, time) flags of the summary positions every token may attend to (hierarchical only)."""
        if self.cfg.attention != "hierarchical":
            return None
        if self.cfg.global_positions == "bar":
            return torch.isin(input_ids, self.bar_ids)
        pos = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        return (pos % self.cfg.global_every == 0).expand(input_ids.shape[0], -1)

    def forward(
        self,
        input_ids: torch.Tensor,
        cache: KVCache | WindowKVCache | None = None,
        condition: torch.Tensor | None = None,
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (batch, time, vocab) for input_ids (batch, time); with a cache, time continues it.

        condition (batch, d_model) is added at every position; prefix (batch, P, d_model) vectors go
        before the first token (both e.g. a VAE's latent). Logits are returned for input_ids only.
        """
        start = cache.length if cache is not None else 0
        n_prefix = prefix.shape[1] if prefix is not None else 0
        if start + n_prefix + input_ids.shape[1] > self.cfg.context:
            raise ValueError(
                f"sequence of {start + n_prefix + input_ids.shape[1]} positions exceeds "
                f"model.context={self.cfg.context}"
            )
        is_global = self.global_positions(input_ids, start + n_prefix)
        x = self.embed(input_ids)
        if condition is not None:
            x = x + condition[:, None, :]
        if prefix is not None:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)
            if is_global is not None:  # under hierarchical attention every token keeps seeing the prefix
                is_global = torch.cat([is_global.new_ones(x.shape[0], n_prefix), is_global], dim=1)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            if self.checkpoint_every and self.training and i % self.checkpoint_every == 0:
                x = checkpoint(block, x, self.rotary, cache, i, is_global, use_reentrant=False)
            else:
                x = block(x, self.rotary, cache, i, is_global)
        if cache is not None:
            cache.advance(x.shape[1], is_global)
        return self.head(self.norm(x[:, n_prefix:]))
