"""Compiled cached decoding on the CPU: each one-token step of the sampler as one graph of C++ kernels.

A cached decoding step of a small model is ~10 MFLOP: eager PyTorch spends it dispatching ~200 operators
one by one. `FastDecoder` wraps a Transformer for the sampler and runs that step compiled by torch.compile
(Inductor emits C++): matrix-vector products become vectorised loops over the weights with the norms,
rotary positions and residual adds fused around them, and keys and values are written in place into the
model's own KV cache. Everything else (reading a prompt, the step that fills the context's last position,
other models and devices) goes to the model itself, as does every step once compilation has failed
(logged once).

The graph takes the weights (packed into one tensor) as an input, so every model of one shape shares it:
it compiles once per shape and batch class (1 row, or more) in a process, the first time it runs
(`warm_up` runs it ahead), and Inductor's on-disk cache makes later processes compile it faster. Logits
agree with the eager model to float rounding (sums in another order), not bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from aurl.models.layers import DECODE_ROWS, KVCache
from aurl.models.transformer import Transformer

log = logging.getLogger(__name__)

# Inductor's C++ wrapper launches the kernels without Python in between (~8% of a step here).
OPTIONS = {"cpp_wrapper": True, "size_asserts": False, "alignment_asserts": False}


def layout(vocab: int, width: int, hidden: int, layers: int) -> list[tuple[int, ...]]:
    """Shapes of the packed weights, in order: embedding, final norm, then each block's norm, qkv,
    projection, norm, MLP up and down."""
    block = [(width,), (3 * width, width), (width, width), (width,), (hidden, width), (width, hidden)]
    return [(vocab, width), (width,), *block * layers]


def _linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (rows, in) @ weight.T, for a graph Inductor compiles: a vectorised dot product per row and output.
    On a 2-core machine the 25 products of a 6-layer d_model 256 model took 0.3 ms this way at one row,
    against 0.42 ms as one block of output rows per thread (bmm) and 2 ms as BLAS calls; a whole step of
    8 rows took 1.3-1.6 ms against 1.85-2.05 ms as row blocks (MKL's packed GEMM was no faster, nor were
    the rows innermost). as_strided makes Inductor write x to memory first: inlined into this loop, its
    producer (a norm, the GELU) would be computed for every output."""
    x = x.as_strided(x.shape, x.stride())
    return (x[:, None, :] * weight).sum(-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (..., head_dim) at one position: each channel pair turned by its angle."""
    pairs = x.unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of one query per row and head (batch, heads, 1, head_dim) over the cache's n positions,
    as reductions Inductor fuses into loops over the cache: the extern flash-attention kernel it would
    call instead costs more than the whole read of the cache at one query (0.21 against 0.14 ms for 8 rows
    at n 256 on this 2-core machine)."""
    scores = (q * k).sum(-1, keepdim=True) * q.shape[-1] ** -0.5  # (batch, heads, n, 1)
    return (scores.softmax(2) * v).sum(2, keepdim=True)


def decode_step(
    ids: torch.Tensor,
    angles: torch.Tensor,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    packed: torch.Tensor,
    dims: tuple[int, int, int, int],
    eps: float | None,
) -> torch.Tensor:
    """Logits (batch, vocab) after ids (batch,) at position n - 1, where angles (n, head_dim) holds the
    rotary cos | sin of positions 0..n-1 (its length carries n into the graph: one graph for every n).
    Writes the step's keys and values into each layer's cache (batch, heads, context, head_dim).
    dims: vocabulary, width, MLP width, heads; packed: the weights flattened in `layout` order."""
    vocab, width, hidden, n_heads = dims
    weights, offset = [], 0
    for shape in layout(vocab, width, hidden, len(keys)):
        size = shape[0] * (shape[1] if len(shape) > 1 else 1)
        weights.append(packed[offset : offset + size].view(shape))
        offset += size
    n = angles.shape[0]
    cos, sin = angles[n - 1].chunk(2)
    position = torch.full((1,), n - 1, dtype=torch.long, device=ids.device)
    embed, final_norm = weights[0], weights[1]
    x = F.embedding(ids, embed)
    batch, head_dim = x.shape[0], width // n_heads
    for layer in range(len(keys)):
        norm1, qkv_w, proj_w, norm2, up_w, down_w = weights[2 + 6 * layer : 8 + 6 * layer]
        qkv = _linear(F.rms_norm(x, (width,), norm1, eps), qkv_w).view(batch, 3, n_heads, 1, head_dim)
        q, k = _rotate(qkv[:, 0], cos, sin), _rotate(qkv[:, 1], cos, sin)
        # index_copy_ into a whole input tensor: Inductor writes the one position in place (a slice
        # assignment, or a layer selected from one cache tensor, made it copy the cache every step).
        keys[layer].index_copy_(2, position, k)
        values[layer].index_copy_(2, position, qkv[:, 2])
        y = _attend(q, keys[layer][:, :, :n], values[layer][:, :, :n])
        x = x + _linear(y.view(batch, width), proj_w)
        hidden_x = F.gelu(_linear(F.rms_norm(x, (width,), norm2, eps), up_w))
        x = x + _linear(hidden_x, down_w)
    return _linear(F.rms_norm(x, (width,), final_norm, eps), embed)


def _compile(fn: Callable) -> Callable:
    # dynamic=False: only the sizes marked in _step vary. Otherwise a second model shape in one process
    # makes dynamo generalise sizes on its own, against the first shape's marks (and compiling fails).
    return torch.compile(fn, fullgraph=True, dynamic=False, options=OPTIONS)


_compiled: Callable | None = None  # decode_step compiled, shared by every FastDecoder


class FastDecoder(nn.Module):
    """A Transformer as the sampler drives it (new_cache, (ids, cache) → logits, cfg) with its cached
    one-token steps compiled. Keeps a packed copy of the weights, made again by `new_cache` when the
    model's weights have changed since."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model, self.cfg = model, model.cfg
        self.reason = self._unsupported(model)  # why steps go to the model (None: they are compiled)
        if self.reason is not None:
            log.info("compiled decoding: %s; decoding eagerly", self.reason)
            return
        with torch.inference_mode():  # the graph's inputs are all inference tensors: one set of guards
            cis = model.rotary.cis
            self.angles = torch.cat([cis.real, cis.imag], dim=-1)  # (context, head_dim): cos | sin
        self.dims = (model.vocab_size, model.cfg.d_model, model.blocks[0].mlp.up.out_features, model.cfg.n_heads)
        self.eps = model.norm.eps
        self.batch_classes: set[bool] = set()  # False: 1 row, True: more; those whose graph was marked dynamic
        self._pack()

    @staticmethod
    def _unsupported(model: nn.Module) -> str | None:
        if type(model) is not Transformer:
            return f"{type(model).__name__} is not a plain Transformer"
        if model.cfg.attention != "full":
            return f"attention {model.cfg.attention}"
        if model.embed.weight.device.type != "cpu" or model.embed.weight.dtype != torch.float32:
            return "it runs float32 on the CPU only"
        if model.head.weight is not model.embed.weight:
            return "the output layer is not tied to the embedding"
        return None

    def _weights(self) -> list[torch.Tensor]:
        weights = [self.model.embed.weight, self.model.norm.weight]
        for block in self.model.blocks:
            parts = (block.norm1, block.attn.qkv, block.attn.proj, block.norm2, block.mlp.up, block.mlp.down)
            weights += [part.weight for part in parts]
        return weights

    def _pack(self) -> None:
        weights = self._weights()
        with torch.inference_mode():
            self.packed = torch.cat([w.detach().flatten() for w in weights])
        # What each weight was when packed: a new tensor has another address, an in-place update bumps
        # the version. Inference tensors keep no version: they are packed again for every new cache.
        self.sources: list[tuple[torch.Tensor, int, int]] = [
            (w, w.data_ptr(), -1 if w.is_inference() else w._version) for w in weights
        ]

    def _stale(self) -> bool:
        return any(w.data_ptr() != p or v < 0 or w._version != v for w, p, v in self.sources)

    def new_cache(self, batch: int) -> KVCache:
        if self.reason is None and self._stale():
            self.reason = self._unsupported(self.model)  # it may have moved to another device
            if self.reason is None:
                self._pack()
            else:
                log.info("compiled decoding: %s; decoding eagerly", self.reason)
        return self.model.new_cache(batch)

    def warm_up(self, batch: int = 1) -> bool:
        """Compile the step for `batch` rows now (on a scratch cache); True when steps will be compiled."""
        if self.reason is None:
            with torch.inference_mode():
                cache = self.new_cache(batch)
                self(torch.zeros(batch, 2, dtype=torch.long), cache)
                self(torch.zeros(batch, 1, dtype=torch.long), cache)
        return self.reason is None

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        n = cache.length + 1 if cache is not None else 0  # positions the cache will hold after this step
        # The graph needs one cached position at least and reads the cache as a slice shorter than it.
        # More rows than DECODE_ROWS go to the model, whose products then go to BLAS.
        rows, length = input_ids.shape
        compiled = self.reason is None and length == 1 and rows <= DECODE_ROWS and 2 <= n < self.cfg.context
        if not compiled or self.model.training or torch.is_grad_enabled():
            return self.model(input_ids, cache)
        try:
            logits = self._step(input_ids, cache, n)
        except Exception as error:  # no C++ compiler, an op Inductor cannot take, ...: decode eagerly
            self.reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
            log.warning("compiled decoding failed (%s); decoding eagerly", self.reason)
            return self.model(input_ids, cache)  # the step wrote nothing the cache counts yet
        cache.advance(1)
        return logits[:, None]

    def _step(self, input_ids: torch.Tensor, cache: KVCache, n: int) -> torch.Tensor:
        global _compiled
        if _compiled is None:
            _compiled = _compile(decode_step)
        ids = input_ids.reshape(-1).contiguous()  # (batch,) with stride 1: strides are guarded too
        angles, (keys, values) = self.angles[:n], cache.layers
        many = ids.shape[0] > 1
        if many not in self.batch_classes:
            # Sizes that vary are marked before the call that compiles: one graph for every position n
            # (and every batch of 2 rows or more) instead of one per value.
            torch._dynamo.mark_dynamic(angles, 0, min=2, max=self.cfg.context - 1)
            if many:
                for tensor in (ids, *keys, *values):
                    torch._dynamo.mark_dynamic(tensor, 0)
            self.batch_classes.add(many)
        return _compiled(ids, angles, keys, values, self.packed, self.dims, self.eps)
