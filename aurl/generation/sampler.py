"""Autoregressive sampling: temperature, top-k, top-p, min-p, a repetition penalty, grammar constraints,
stop conditions, and a window that slides so a piece may run longer than the model's context."""

from __future__ import annotations

import torch
from torch import nn

from aurl.config import GenerateConfig
from aurl.generation.grammar import Grammar
from aurl.generation.multitrack_grammar import Segment

CLOSING_STEPS = 1024  # at most this many tokens past the budget to end sounding notes (MIDILike)


def filter_logits(
    logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> torch.Tensor:
    """Scaled logits with everything outside the top-k, the top-p nucleus and the min-p floor set to -inf."""
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
    if min_p > 0:  # Nguyen et al. 2024: the floor scales with the model's confidence
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, float("-inf"))
    return logits


def penalise_repeats(logits: torch.Tensor, recent: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019): logits of tokens in `recent` (batch, window) are
    divided by the penalty where positive and multiplied where negative."""
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, recent, True)
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)


@torch.inference_mode()
def sample(
    model: nn.Module,
    prompt: torch.Tensor,
    settings: GenerateConfig,
    grammar: Grammar | None = None,
    eos_id: int | None = None,
    pad_id: int = 0,
    bar_ids: list[int] | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    plan: list[Segment] | None = None,
) -> torch.Tensor:
    """prompt (batch, P), starting with BOS → (batch, P + about settings.max_tokens) tokens.

    A row ends at eos_id (then pads with pad_id), before the token that would open its (max_bars + 1)-th
    bar (one of bar_ids), or at the token budget. With a grammar, only tokens it allows are sampled. When
    the tokens in the model's window reach its context, the window slides: the last half of the context
    is read again into a fresh cache (rotary positions are relative, so the model sees a window like
    those it trained on). With a plan (a multitrack grammar's segments), the rows write those segments
    after the prompt and then end.
    """
    model.eval()
    context = model.cfg.context
    batch = prompt.shape[0]
    seq = prompt
    done = torch.zeros(batch, dtype=torch.bool, device=prompt.device)
    opening = torch.tensor(bar_ids, device=prompt.device) if bar_ids else None
    bars = torch.isin(prompt, opening).sum(1) if opening is not None else None
    state = None
    if grammar is not None:
        state = grammar.start(batch)
        grammar.replay(state, prompt[:, 1:])
        if plan is not None:
            grammar.plan(state, plan)

    def read(ids: torch.Tensor):
        cache = model.new_cache(batch) if use_cache else None
        return cache, model(ids, cache)[:, -1]

    start = max(0, seq.shape[1] - context)  # where the model's window begins in seq
    cache, logits = read(seq[:, start:])

    def step(closing: bool) -> bool:
        """Sample one token per row; True once every row has ended."""
        nonlocal seq, start, cache, logits
        logits = logits.float()
        if settings.repetition_penalty > 1:
            logits = penalise_repeats(logits, seq[:, -settings.repetition_window :], settings.repetition_penalty)
        if state is not None:
            logits = logits.masked_fill(~grammar.mask(state, closing), float("-inf"))
        if eos_id is not None and seq.shape[1] - prompt.shape[1] < settings.min_tokens:
            logits[:, eos_id] = float("-inf")
        probs = filter_logits(logits, settings.temperature, settings.top_k, settings.top_p, settings.min_p).softmax(-1)
        nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        if bars is not None and settings.max_bars is not None and eos_id is not None:
            opens = torch.isin(nxt, opening)
            nxt = torch.where(opens & (bars >= settings.max_bars), eos_id, nxt)
            bars.add_(opens)
        nxt = torch.where(done, pad_id, nxt)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        if state is not None:
            grammar.update(state, nxt)
        if eos_id is not None:
            done.logical_or_(nxt == eos_id)
            if bool(done.all()):
                return True
        if seq.shape[1] - start > context:  # the window is full: slide it
            start = seq.shape[1] - context // 2
            cache, logits = read(seq[:, start:])
        elif use_cache:
            logits = model(nxt[:, None], cache)[:, -1]
        else:
            logits = model(seq[:, start:])[:, -1]
        return False

    for _ in range(settings.max_tokens):
        if step(closing=False):
            return seq
    if state is not None and grammar.needs_closing and eos_id is not None:
        for _ in range(CLOSING_STEPS):  # end the notes still sounding, then EOS
            if step(closing=True):
                break
    return seq
