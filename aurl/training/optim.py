"""The optimizer and its LR schedule, as train.* configures them."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from aurl.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # Weight decay on matrices only: decaying norms' gains and biases only hurts.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = cfg.fused if cfg.fused is not None else device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)


def lr_factor(cfg: TrainConfig) -> Callable[[int, float], float]:
    """LR multiplier per optimizer step: linear warmup to 1, then the configured decay to min_lr / lr.
    The decay follows the run's progress: the larger of steps / max_steps and `spent`, the share of
    train.max_minutes used so far (0 without a time budget). `plateau` holds at 1 here; validation
    lowers it on stalled validation loss (see validation.py)."""
    floor = cfg.min_lr / cfg.lr

    def factor(step: int, spent: float = 0.0) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, max(spent, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)))
        if cfg.schedule == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        if cfg.schedule == "linear":
            return floor + (1 - floor) * (1 - progress)
        return 1.0  # constant, plateau

    return factor
