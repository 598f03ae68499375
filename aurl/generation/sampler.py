"""Autoregressive sampling with temperature, top-k and top-p, with or without the KV cache."""

from __future__ import annotations

import torch
from torch import nn


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Scaled logits with everything outside the top-k and the top-p nucleus set to -inf."""
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens ranked above it already reach top_p; the first always stays.
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return logits


@torch.no_grad()
def sample(
    model: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """prompt (batch, P) → (batch, P + new) tokens; a row that emitted eos_id is padded with pad_id after it."""
    model.eval()
    max_new_tokens = min(max_new_tokens, model.cfg.context - prompt.shape[1])
    seq = prompt
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    cache = model.new_cache(prompt.shape[0]) if use_cache else None
    logits = model(prompt, cache)[:, -1]
    for _ in range(max_new_tokens):
        probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
        nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        if eos_id is not None:
            done |= nxt == eos_id
            if bool(done.all()):
                break
        logits = (model(nxt[:, None], cache) if use_cache else model(seq))[:, -1]
    return seq
