"""Autoregressive sampling: temperature, top-k, top-p, min-p, a repetition penalty, grammar constraints,
stop conditions, and a window that slides so a piece may run longer than the model's context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from aurl.config import GenerateConfig
from aurl.generation.given import Given
from aurl.generation.grammar import Grammar
from aurl.generation.multitrack_grammar import Segment

CLOSING_STEPS = 1024  # at most this many tokens past the budget to end sounding notes (MIDILike)


Setting = float | torch.Tensor  # one value for every row, or a (batch, 1) tensor of one per row


def filter_logits(
    logits: torch.Tensor,
    temperature: Setting,
    top_k: int | torch.Tensor = 0,
    top_p: Setting = 1.0,
    min_p: Setting = 0.0,
) -> torch.Tensor:
    """Scaled logits with everything outside the top-k, the top-p nucleus and the min-p floor set to -inf.
    A setting is one number, or a (batch, 1) tensor of one per row (top_k 0 and top_p 1 keep every token)."""
    logits = logits.float() / temperature
    if isinstance(top_k, torch.Tensor):
        ranked = torch.sort(logits, descending=True, dim=-1).values
        kth = ranked.gather(-1, (top_k - 1).clamp(0, logits.shape[-1] - 1))
        keep_all = (top_k == 0) | (top_k >= logits.shape[-1])
        logits = logits.masked_fill((logits < kth) & ~keep_all, float("-inf"))
    elif 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if isinstance(top_p, torch.Tensor) or top_p < 1.0:
        if isinstance(top_p, torch.Tensor):  # a row with top_p 1 keeps everything, whatever the rounding
            top_p = torch.where(top_p < 1.0, top_p, float("inf"))
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens ranked above it already reach top_p; the first always stays.
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    if isinstance(min_p, torch.Tensor) or min_p > 0:  # Nguyen et al. 2024: the floor scales with confidence
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, float("-inf"))
    return logits


def penalise_repeats(logits: torch.Tensor, recent: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019): logits of tokens in `recent` (batch, window) are
    divided by the penalty where positive and multiplied where negative."""
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, recent, True)
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)


@dataclass
class Rows:
    """Rows of a batch that share their sampling settings and random generator: one request's pieces.
    Requests sampled together give each of their rows what sampling the request alone would give."""

    count: int
    settings: GenerateConfig
    generator: torch.Generator | None = None


# Called after every token with the rows so far; may return a (batch,) bool tensor of rows to stop now.
StepHook = Callable[[torch.Tensor], "torch.Tensor | None"]


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
    plan: list[Segment] | list[Given] | None = None,
    groups: list[Rows] | None = None,
    on_step: StepHook | None = None,
) -> torch.Tensor:
    """prompt (batch, P), starting with BOS → (batch, P + about settings.max_tokens) tokens.

    A row ends at eos_id (then pads with pad_id), before the token that would open its (max_bars + 1)-th
    bar (one of bar_ids), or at the token budget; it may not end before min_tokens new tokens nor before its
    min_bars-th bar has opened. With a grammar, only tokens it allows are sampled. When
    the tokens in the model's window reach its context, the window slides: the last half of the context
    is read again into a fresh cache (rotary positions are relative, so the model sees a window like
    those it trained on). With a plan (a multitrack grammar's segments, or a Given per row or for all), the
    rows write what it asks after the prompt and then end. With `groups` (consecutive rows, counts summing
    to the batch), each group samples with its own settings and generator instead of `settings` and
    `generator`; a group's rows that end before others pad.
    """
    model.eval()
    context = model.cfg.context
    batch = prompt.shape[0]
    groups = groups or [Rows(batch, settings, generator)]
    spans, first = [], 0
    for rows in groups:
        spans.append(slice(first, first + rows.count))
        first += rows.count
    if first != batch:
        raise ValueError(f"sample: groups cover {first} rows of a batch of {batch}")
    budget = torch.tensor([r.settings.max_tokens for r in groups for _ in range(r.count)], device=prompt.device)
    closable = grammar is not None and (grammar.needs_closing or plan is not None) and eos_id is not None
    closing_steps = CLOSING_STEPS
    seq = prompt
    done = torch.zeros(batch, dtype=torch.bool, device=prompt.device)
    opening = torch.tensor(bar_ids, device=prompt.device) if bar_ids else None
    bars = torch.isin(prompt, opening).sum(1) if opening is not None else None
    state = None
    if grammar is not None:
        state = grammar.start(batch)
        grammar.replay(state, prompt[:, 1:])
        grammar.set_meter(state, [r.settings.meter for r in groups for _ in range(r.count)])
        if plan is not None:  # a plan's forced tokens may still be due when the budget is spent
            closing_steps += grammar.plan(state, plan)

    def read(ids: torch.Tensor):
        cache = model.new_cache(batch) if use_cache else None
        return cache, model(ids, cache)[:, -1]

    start = max(0, seq.shape[1] - context)  # where the model's window begins in seq
    cache, logits = read(seq[:, start:])

    rows = [r.settings for r in groups for _ in range(r.count)]  # each row's settings

    def per_row(name: str, neutral: float) -> Setting:
        """A setting as a (batch, 1) tensor of each row's value, or `neutral` itself (the value that changes
        nothing: every row has it, or None) so that the step skips it. A row's tokens then depend on its own
        settings only, alone or in a batch."""
        values = [neutral if getattr(r, name) is None else getattr(r, name) for r in rows]
        return neutral if all(v == neutral for v in values) else torch.tensor(values, device=prompt.device)[:, None]

    temperature, top_k, top_p, min_p = (
        per_row(n, v) for n, v in [("temperature", 1.0), ("top_k", 0), ("top_p", 1.0), ("min_p", 0.0)]
    )
    min_tokens, max_bars = per_row("min_tokens", 0), per_row("max_bars", float("inf"))
    min_bars = per_row("min_bars", 0) if bars is not None else 0
    repeats: dict[tuple[float, int], torch.Tensor] = {}  # rows under each (penalty, window) in use
    for i, r in enumerate(rows):
        if r.repetition_penalty > 1:
            key = (r.repetition_penalty, r.repetition_window)
            repeats.setdefault(key, torch.zeros(batch, dtype=torch.bool, device=prompt.device))[i] = True

    def pick(logits: torch.Tensor, allowed: torch.Tensor | None, written: int) -> torch.Tensor:
        """One token per row, each group by its own settings and generator."""
        for (penalty, window), these in repeats.items():
            penalised = penalise_repeats(logits, seq[:, -window:], penalty)
            logits = penalised if bool(these.all()) else torch.where(these[:, None], penalised, logits)
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        if eos_id is not None and isinstance(min_tokens, torch.Tensor):
            logits[:, eos_id] = logits[:, eos_id].masked_fill(written < min_tokens.squeeze(1), float("-inf"))
        if eos_id is not None and isinstance(min_bars, torch.Tensor):
            # a row closing at its budget may end, as may one the grammar allows nothing else
            short = (bars < min_bars.squeeze(1)) & (written < budget) & (torch.isfinite(logits).sum(-1) > 1)
            logits[:, eos_id] = logits[:, eos_id].masked_fill(short, float("-inf"))
        probs = filter_logits(logits, temperature, top_k, top_p, min_p).softmax(-1)
        # torch.multinomial's draw of one sample, argmax(p / q) with q ~ Exp(1), with each group's q from its
        # own generator: the same tokens as a multinomial per group, in one argmax for the batch.
        q = torch.empty_like(probs)
        for r, span in zip(groups, spans, strict=True):
            q[span].exponential_(generator=r.generator)
        nxt = (probs / q).argmax(-1)
        if bars is not None and eos_id is not None:
            opens = torch.isin(nxt, opening)
            if isinstance(max_bars, torch.Tensor):
                nxt = torch.where(opens & (bars >= max_bars.squeeze(1)), eos_id, nxt)
            bars.add_(opens)
        return nxt

    written = 0
    while True:
        spent = written >= budget  # these rows close their notes (or end) before anything new
        done.logical_or_(written >= budget + closing_steps if closable else spent)
        if bool(done.all()):
            return seq
        allowed = None
        if state is not None:
            allowed = grammar.mask(state, closing=False)
            if closable and bool(spent.any()):
                allowed = torch.where(spent[:, None], grammar.mask(state, closing=True), allowed)
        nxt = torch.where(done, pad_id, pick(logits.float(), allowed, written))
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        written += 1
        if state is not None:
            grammar.update(state, nxt)
        if eos_id is not None:
            done.logical_or_(nxt == eos_id)
        if on_step is not None and (stop := on_step(seq)) is not None:
            done.logical_or_(stop)
        if bool(done.all()):
            return seq
        if seq.shape[1] - start > context:  # the window is full: slide it
            start = seq.shape[1] - context // 2
            cache, logits = read(seq[:, start:])
        elif use_cache:
            logits = model(nxt[:, None], cache)[:, -1]
        else:
            logits = model(seq[:, start:])[:, -1]
