"""Transformer building blocks: rotary positions, causal SDPA attention with a KV cache, MLP, block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Rotary(nn.Module):
    """Rotary position embedding (RoFormer), applied to queries and keys at absolute positions.

    Each pair of channels is a complex number rotated by its position's angle: one complex product,
    several times faster on the CPU than the same rotation written with real sines and cosines."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        self.register_buffer("cis", torch.polar(torch.ones_like(angles), angles), persistent=False)

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """x: (..., time, head_dim) whose first time step sits at position `start`."""
        pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(pairs * self.cis[start : start + x.shape[-2]]).flatten(-2).type_as(x)


DECODE_ROWS = 64  # at most this many rows (batch x new tokens) take Linear's decoding path


class Linear(nn.Linear):
    """nn.Linear (no bias) with a faster path for the few rows of cached decoding on a CPU.

    There a matrix-vector product streams the whole weight from memory for very little arithmetic, and
    BLAS runs it on one core. Split into one row block per thread, as a batched product, torch runs the
    blocks in parallel and the step reads the weights with every core's memory bandwidth: the model's
    matrix products took half the time on this 2-core machine. Training (autograd on) keeps F.linear.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, blocks, width = x.numel() // self.in_features, torch.get_num_threads(), self.in_features
        decoding = not torch.is_grad_enabled() and rows <= DECODE_ROWS and x.device.type == "cpu"
        if not decoding or blocks < 2 or self.out_features % blocks or self.bias is not None or not x.is_contiguous():
            return super().forward(x)
        # x's rows as columns of every block, (blocks, in, rows): a transposed view lets BLAS take the
        # batched product (a reshaped copy of the same numbers ran 5x slower here); one op, no copy.
        columns = x.as_strided((blocks, width, rows), (0, 1, width))
        y = torch.bmm(self.weight.view(blocks, -1, width), columns)  # (blocks, out / blocks, rows)
        if rows > 1:
            y = y.flatten(0, 1).t().contiguous()
        return y.view(*x.shape[:-1], self.out_features)


class KVCache:
    """Keys and values of every layer for positions already seen, so each new token costs one step."""

    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_heads: int,
        max_len: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ):
        shape = (n_layers, batch, n_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.layers = (list(self.k), list(self.v))  # each layer's keys and values, views made once
        self.max_len = max_len
        self.length = 0  # positions filled; advanced by the model after all layers have written

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.shape[-2]
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, t: int, is_global: torch.Tensor | None = None) -> None:
        self.length += t


class WindowKVCache:
    """The cache of sliding and hierarchical attention: a ring of the last `window` positions, and for
    hierarchical attention every global position seen. Memory is window + globals, not the whole past."""

    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_heads: int,
        window: int,
        max_globals: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ):
        self.k = torch.zeros(n_layers, batch, n_heads, window, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.slot_pos = torch.full((window,), -1, device=device)  # position each ring slot holds
        self.gk = torch.zeros(n_layers, batch, n_heads, max_globals, head_dim, device=device, dtype=dtype)
        self.gv = torch.zeros_like(self.gk)
        self.g_pos = torch.full((batch, max_globals), -1, device=device)  # -1: empty
        self.g_count = [0] * batch
        self.window, self.length = window, 0

    def context(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys, values and mask for new queries at positions length..: far global keys, then the ring
        and the new keys within the window (a key is seen through one branch only)."""
        b, t, w = k.shape[0], k.shape[2], self.window
        q_pos = torch.arange(self.length, self.length + t, device=k.device)
        held = self.slot_pos >= 0
        local_pos = torch.cat([self.slot_pos[held], q_pos])
        keys = torch.cat([self.gk[layer], self.k[layer][:, :, held], k], dim=2)
        values = torch.cat([self.gv[layer], self.v[layer][:, :, held], v], dim=2)
        local = (local_pos[None, :] <= q_pos[:, None]) & (local_pos[None, :] > q_pos[:, None] - w)
        far = (self.g_pos[:, None, :] >= 0) & (self.g_pos[:, None, :] <= q_pos[None, :, None] - w)
        mask = torch.cat([far[:, None], local.expand(b, 1, t, -1)], dim=-1)
        return keys, values, mask

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, is_global: torch.Tensor | None) -> None:
        t = k.shape[2]
        keep = min(t, self.window)
        slots = torch.arange(self.length + t - keep, self.length + t, device=k.device) % self.window
        self.k[layer][:, :, slots] = k[:, :, -keep:]
        self.v[layer][:, :, slots] = v[:, :, -keep:]
        if is_global is not None:
            for row in range(k.shape[0]):
                idx = is_global[row].nonzero().flatten()
                n = self.g_count[row]
                self.gk[layer, row, :, n : n + len(idx)] = k[row][:, idx]
                self.gv[layer, row, :, n : n + len(idx)] = v[row][:, idx]

    def advance(self, t: int, is_global: torch.Tensor | None = None) -> None:
        """After every layer has written: move the ring and the global list on by t positions."""
        keep = min(t, self.window)
        pos = torch.arange(self.length + t - keep, self.length + t, device=self.slot_pos.device)
        self.slot_pos[pos % self.window] = pos
        if is_global is not None:
            for row in range(is_global.shape[0]):
                idx = is_global[row].nonzero().flatten()
                n = self.g_count[row]
                self.g_pos[row, n : n + len(idx)] = idx + self.length
                self.g_count[row] += len(idx)
        self.length += t


def local_global_mask(
    q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None, k_global: torch.Tensor | None
) -> torch.Tensor:
    """Which keys each query may see: causal, within the last `window` positions (None: all), or any
    earlier key flagged global. q_pos (Q,), k_pos (K,), k_global (B, K) → (B or 1, 1, Q, K) bool."""
    causal = k_pos[None, :] <= q_pos[:, None]
    if window is None:
        return causal[None, None]
    visible = causal & (k_pos[None, :] > q_pos[:, None] - window)
    if k_global is not None:
        visible = visible[None] | (causal[None] & k_global[:, None, :])
        return visible[:, None]
    return visible[None, None]


class CausalSelfAttention(nn.Module):
    """Causal self-attention on torch SDPA: full, sliding window, or sliding window plus global keys.

    Sliding and hierarchical attention run chunk by chunk (a chunk of queries against its window of keys
    and the global keys), so memory grows with length x (window + globals) rather than length squared.
    """

    def __init__(self, d_model: int, n_heads: int, window: int | None = None):
        super().__init__()
        self.n_heads, self.head_dim, self.window = n_heads, d_model // n_heads, window
        self.qkv = Linear(d_model, 3 * d_model, bias=False)
        self.proj = Linear(d_model, d_model, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rotary: Rotary,
        cache: KVCache | WindowKVCache | None,
        layer: int,
        is_global: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        start = cache.length if cache is not None else 0
        (q, k), v = rotary(qkv[:2], start), qkv[2]  # one rotation for queries and keys together
        # No dropout on attention weights: it forces SDPA off its fused CPU kernel (~40% slower here).
        if isinstance(cache, WindowKVCache):
            if start == 0:
                y = self._chunked(q, k, v, is_global)
            else:
                if t > self.window:
                    raise ValueError(f"continue a windowed cache with at most model.window={self.window} tokens")
                keys, values, mask = cache.context(layer, k, v)
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
            cache.write(layer, k, v, is_global)
        elif self.window is not None:
            y = self._chunked(q, k, v, is_global)
        else:
            mask = None
            if cache is not None:
                k, v = cache.update(layer, k, v)
                if start > 0 and t > 1:  # queries at start.. see every cached key and the new ones up to themselves
                    pos = torch.arange(start + t, device=x.device)
                    mask = local_global_mask(pos[start:], pos, None, None)
            # One new query sees every key: no mask at all (the common case of cached decoding).
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and t > 1)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))

    def _chunked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_global: torch.Tensor | None):
        """Queries in chunks of `window`: each sees its local keys and the global keys before them."""
        b, h, t, dh = q.shape
        w = self.window
        pos = torch.arange(t, device=q.device)
        if is_global is not None and bool(is_global.any()):
            n = int(is_global.sum(1).max())
            g_pos = torch.argsort((~is_global).int(), dim=1, stable=True)[:, :n]  # global positions first
            g_valid = torch.arange(n, device=q.device) < is_global.sum(1, keepdim=True)
            index = g_pos[:, None, :, None].expand(b, h, n, dh)
            g_k, g_v = k.gather(2, index), v.gather(2, index)
        else:
            g_pos = None
        out = []
        for s in range(0, t, w):
            e, lo = min(t, s + w), max(0, s - w + 1)
            q_pos, k_pos = pos[s:e], pos[lo:e]
            mask = local_global_mask(q_pos, k_pos, w, None)
            keys, values = k[:, :, lo:e], v[:, :, lo:e]
            if g_pos is not None:
                # A global key outside a query's window, and before it: seen once, through this branch.
                far = g_valid[:, None, :] & (g_pos[:, None, :] <= q_pos[None, :, None] - w)
                mask = torch.cat([far[:, None], mask.expand(b, 1, -1, -1)], dim=-1)
                keys, values = torch.cat([g_k, keys], dim=2), torch.cat([g_v, values], dim=2)
            out.append(F.scaled_dot_product_attention(q[:, :, s:e], keys, values, attn_mask=mask))
        return torch.cat(out, dim=2)


class MLP(nn.Module):
    def __init__(self, d_model: int, hidden: int, dropout: float):
        super().__init__()
        self.up = Linear(d_model, hidden, bias=False)
        self.down = Linear(hidden, d_model, bias=False)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.down(F.gelu(self.up(x))), self.dropout, self.training)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, d_model: int, n_heads: int, hidden: int, dropout: float, window: int | None = None):
        super().__init__()
        self.norm1 = nn.RMSNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, window)
        self.norm2 = nn.RMSNorm(d_model)
        self.mlp = MLP(d_model, hidden, dropout)
        self.dropout = dropout

    def forward(
        self,
        x: torch.Tensor,
        rotary: Rotary,
        cache: KVCache | WindowKVCache | None,
        layer: int,
        is_global: torch.Tensor | None = None,
    ) -> torch.Tensor:
        attended = self.attn(self.norm1(x), rotary, cache, layer, is_global)
        x = x + F.dropout(attended, self.dropout, self.training)
        return x + self.mlp(self.norm2(x))
