"""The training loop. It knows nothing about music or model internals: it calls `objective(batch)`.

Per step: next batch → forward under autocast → backward → clip → AdamW step → LR schedule. At
intervals it logs, evaluates on the validation windows, and writes checkpoints.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from aurl.config import TrainConfig
from aurl.training.checkpoint import prune_checkpoints, save_checkpoint
from aurl.training.logger import MetricsLogger

Objective = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_cosine(cfg: TrainConfig) -> Callable[[int], float]:
    """LR multiplier: linear warmup to 1, then cosine decay to min_lr / lr at max_steps."""
    floor = cfg.min_lr / cfg.lr

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # Weight decay on matrices only: decaying norms' gains and biases only hurts.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=device.type == "cuda" or None)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        objective: Objective,
        train_loader: DataLoader,
        valid_loader: DataLoader,
        run_dir: Path,
        device: torch.device,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ):
        self.cfg, self.model, self.objective = cfg, model, objective
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.run_dir, self.device, self.progress, self.log = run_dir, device, progress, log
        self.optimizer = build_optimizer(model, cfg, device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(cfg))
        self.step, self.epoch = 0, 0
        self.best_valid = math.inf

    def _autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            self.train_loader.batch_sampler.set_epoch(self.epoch)
            self.train_loader.dataset.set_epoch(self.epoch)
            yield from self.train_loader
            self.epoch += 1

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Token-weighted mean of the objective's metrics over up to eval_batches validation batches."""
        self.model.eval()
        sums: dict[str, float] = {}
        total = 0
        for i, batch in enumerate(self.valid_loader):
            if i >= self.cfg.eval_batches:
                break
            with self._autocast():
                out = self.objective(self._to_device(batch))
            n = int(out.pop("tokens"))
            total += n
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
        self.model.train()
        return {k: v / max(1, total) for k, v in sums.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "best_valid": self.best_valid,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        }

    def save(self, metrics: dict[str, float], best: bool) -> None:
        folder = self.run_dir / "checkpoints"
        save_checkpoint(folder, self.step, self.model, self.state_dict(), metrics, best)
        prune_checkpoints(folder, self.cfg.keep_last)

    def fit(self) -> dict[str, float]:
        """Train to max_steps; returns the last training and validation metrics."""
        cfg = self.cfg
        logger = MetricsLogger(self.run_dir)
        self.model.train()
        batches = self._batches()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", unit="step", disable=not self.progress)
        window_tokens, window_start, loss_sum, loss_n = 0, time.perf_counter(), 0.0, 0
        train_metrics: dict[str, float] = {}
        valid: dict[str, float] = {}
        try:
            while self.step < cfg.max_steps:
                batch = self._to_device(next(batches))
                with self._autocast():
                    out = self.objective(batch)
                out["loss"].backward()
                grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or math.inf)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.step += 1
                window_tokens += int(out["tokens"])
                loss_sum, loss_n = loss_sum + out["loss"].item(), loss_n + 1

                if self.step % cfg.log_interval == 0 or self.step == cfg.max_steps:
                    elapsed = time.perf_counter() - window_start
                    train_metrics = {
                        "loss": loss_sum / loss_n,
                        "accuracy": float(out["accuracy"]),
                        "lr": self.scheduler.get_last_lr()[0],
                        "grad_norm": float(grad_norm),
                        "tokens_per_s": window_tokens / elapsed,
                        "epoch": self.epoch,
                    }
                    logger.log(self.step, "train", train_metrics)
                    bar.set_postfix(loss=f"{train_metrics['loss']:.3f}", tok_s=f"{train_metrics['tokens_per_s']:,.0f}")
                    window_tokens, window_start, loss_sum, loss_n = 0, time.perf_counter(), 0.0, 0
                bar.update()

                final = self.step == cfg.max_steps
                improved = False
                if self.step % cfg.eval_interval == 0 or final:
                    valid = self.evaluate()
                    logger.log(self.step, "valid", valid)
                    improved = valid["loss"] < self.best_valid
                    self.best_valid = min(self.best_valid, valid["loss"])
                    self.log(f"step {self.step}: valid loss {valid['loss']:.4f}  accuracy {valid['accuracy']:.3f}")
                if improved or final or self.step % cfg.save_interval == 0:
                    self.save({f"valid_{k}": v for k, v in valid.items()}, best=improved)
        finally:
            bar.close()
            logger.close()
        return {**{f"train_{k}": v for k, v in train_metrics.items()}, **{f"valid_{k}": v for k, v in valid.items()}}
