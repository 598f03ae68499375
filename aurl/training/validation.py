"""Validation during training and what follows from it: which checkpoint is `best`, early stopping, and the
plateau schedule's LR drops.

The validation batches are the same on every evaluation and for any number of ranks: the first
train.eval_batches batches, shared out over the ranks (see EvalBatchSampler), each metric weighted by its
batch's targets and divided once after summing over the ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from aurl.config import TrainConfig
from aurl.data.dataset import EvalBatchSampler
from aurl.errors import ConfigError
from aurl.training.distributed import DistEnv, all_reduce_floats

Forward = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class Stall:
    """Counts evaluations without improvement of a metric (for early stopping and the plateau schedule)."""

    def __init__(self, mode: str, min_delta: float):
        self.sign = 1.0 if mode == "min" else -1.0
        self.min_delta = min_delta
        self.best = math.inf
        self.evals = 0

    def update(self, value: float) -> bool:
        """Record a value; True when it improves on the best by more than min_delta."""
        improved = self.sign * value < self.best - self.min_delta
        if improved:
            self.best, self.evals = self.sign * value, 0
        else:
            self.evals += 1
        return improved

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best, "evals": self.evals}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best, self.evals = float(state["best"]), int(state["evals"])


def _shared_out(loader: DataLoader, batches: int, env: DistEnv) -> DataLoader:
    """The validation loader over this rank's share of its first `batches` batches: train.eval_batches
    counts the batches of all ranks together."""
    sampler = EvalBatchSampler(len(loader.dataset), loader.batch_size, batches, env.rank, env.world_size)
    return DataLoader(
        loader.dataset,
        batch_sampler=sampler,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        generator=loader.generator,
    )


class Validation:
    """Evaluates on the validation batches and judges each result. Without a loader (no validation pieces)
    `enabled` is False and nothing is evaluated."""

    def __init__(
        self,
        cfg: TrainConfig,
        loader: DataLoader | None,
        env: DistEnv,
        device: torch.device,
        log: Callable[[str], None],
    ):
        self.cfg, self.env, self.device, self.log = cfg, env, device, log
        self.loader = None if loader is None else _shared_out(loader, cfg.eval_batches, env)
        self.best = Stall("min", 0.0)  # which checkpoint is `best`: the lowest validation loss
        self.early_stopping = Stall(cfg.early_stopping.mode, cfg.early_stopping.min_delta)
        self.plateau = Stall("min", 0.0)
        self.lr_scale = 1.0  # lowered by the plateau schedule

    @property
    def enabled(self) -> bool:
        return self.loader is not None

    @torch.no_grad()
    def evaluate(self, model: nn.Module, forward: Forward) -> dict[str, float]:
        """Target-weighted mean of the objective's metrics (`forward` runs it on a batch). Each metric's sum
        (metric x targets, per batch) and the target count are summed over the ranks before the one division,
        so any number of ranks gives the value of one process over the same windows."""
        model.eval()
        sums: dict[str, float] = {}
        total = 0.0
        for counted, batch in zip(self.loader.batch_sampler.counted, self.loader, strict=True):
            out = forward(batch)
            n = float(batch["weight"].sum()) if counted else 0.0  # a batch that only keeps FSDP in step
            total += n
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
        model.train()
        keys = list(sums)  # the objective's order, the same on every rank
        total, *summed = all_reduce_floats([total, *(sums[k] for k in keys)], self.env, self.device)
        return {k: v / max(1.0, total) for k, v in zip(keys, summed, strict=True)}

    def judge(self, valid: dict[str, float]) -> tuple[bool, bool]:
        """(a new best validation loss, training should stop); lowers the plateau LR on a stall."""
        cfg = self.cfg
        improved = self.best.update(valid["loss"])
        stalled = cfg.schedule == "plateau" and not self.plateau.update(valid["loss"])
        if stalled and self.plateau.evals > cfg.plateau_patience:
            self.lr_scale *= cfg.plateau_factor
            self.plateau.evals = 0
            self.log(f"validation loss stalled: LR scaled to {self.lr_scale:g}x")
        es = cfg.early_stopping
        if not es.enabled:
            return improved, False
        if es.metric not in valid:
            raise ConfigError(f"train.early_stopping.metric {es.metric!r}: not one of {sorted(valid)}")
        self.early_stopping.update(valid[es.metric])
        stop = self.early_stopping.evals >= es.patience
        if stop:
            self.log(f"early stopping: valid {es.metric} has not improved for {es.patience} evaluations")
        return improved, stop

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best.state_dict(),
            "early_stopping": self.early_stopping.state_dict(),
            "plateau": self.plateau.state_dict(),
            "lr_scale": self.lr_scale,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best.load_state_dict(state["best"])
        self.early_stopping.load_state_dict(state["early_stopping"])
        self.plateau.load_state_dict(state["plateau"])
        self.lr_scale = float(state["lr_scale"])
