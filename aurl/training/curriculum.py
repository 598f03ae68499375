"""Sequence-length curriculum and the token-budget batch-size rule.

Together they give, for every micro-batch, the window length and the number of windows: the length
grows over the curriculum's steps and the batch size follows the token budget, so each step holds
about the same number of tokens whatever the length.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from aurl.config import CurriculumConfig


def curriculum_length(step: int, cfg: CurriculumConfig, final_len: int) -> int:
    """Window length at optimizer step `step`: start_len → end_len, rounded down to cfg.multiple."""
    end = cfg.end_len or final_len
    if not cfg.enabled or step >= cfg.steps:
        return end
    p = step / cfg.steps
    start = cfg.start_len
    if cfg.schedule == "linear":
        length = start + (end - start) * p
    elif cfg.schedule == "exponential":
        length = start * (end / start) ** p
    else:  # cosine: slow at both ends
        length = start + (end - start) * (1 - math.cos(math.pi * p)) / 2
    return max(start, min(end, int(length) // cfg.multiple * cfg.multiple))


def batch_size_for(seq_len: int, batch_tokens: int, min_batch: int, max_batch: int) -> int:
    """The token-budget rule: as many windows as the budget holds, clamped to [min_batch, max_batch]."""
    return max(min_batch, min(max_batch, batch_tokens // seq_len))


def batch_plan(
    curriculum: CurriculumConfig, final_len: int, batch_tokens: int, min_batch: int, max_batch: int, grad_accum: int
) -> Callable[[int], tuple[int, int]]:
    """(window length, micro-batch size) of the i-th micro-batch; a step is grad_accum micro-batches."""

    def plan(micro: int) -> tuple[int, int]:
        length = curriculum_length(micro // grad_accum, curriculum, final_len)
        return length, batch_size_for(length, batch_tokens, min_batch, max_batch)

    return plan


def largest_fitting_batch(try_batch: Callable[[int], bool], largest: int, smallest: int = 1) -> int:
    """The largest batch size, halving from `largest`, for which `try_batch` returns True without running
    out of memory (torch.OutOfMemoryError); `smallest` when none fits, and the caller's step will fail there."""
    batch = largest
    while batch > smallest:
        try:
            if try_batch(batch):
                return batch
        except torch.OutOfMemoryError:
            pass
        batch //= 2
    return max(batch, smallest)
