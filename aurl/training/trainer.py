"""The training loop. It knows nothing about music or model internals: it calls `objective(batch)`.

One step: take grad_accum micro-batches → forward each under autocast, backward (gradients synchronised
across ranks on the last only, each weighted by its share of the step's targets) → unscale, clip →
skip the step if anything is non-finite, else AdamW step → LR schedule. Around the steps, on their
schedule: logging, evaluation, samples and checkpoints. What follows from a step or an evaluation is
decided by components that keep their own state (stability.py: non-finite steps, recovery, spikes;
validation.py: best, early stopping, plateau), and the checkpoint is the dict of them (checkpoint.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from aurl.config import TrainConfig
from aurl.data.dataset import TokenBudgetBatchSampler
from aurl.progress import message_writer
from aurl.training.checkpoint import Checkpointer, OptimizerState, Stateful, load_trainer_state
from aurl.training.distributed import DistEnv, all_reduce_sum, gradient_sync, unwrap
from aurl.training.logger import Reporter
from aurl.training.monitor import Clock, ThroughputMeter, measure_peak_flops, memory_stats, profiler
from aurl.training.optim import build_optimizer, lr_factor
from aurl.training.rng import RandomState
from aurl.training.stability import Stability
from aurl.training.stability import TrainingError as TrainingError  # what fit raises when it cannot go on
from aurl.training.validation import Validation

Objective = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
# (step, unwrapped model) → (metrics, images (H, W, 3) uint8) of pieces it wrote: see evaluation/during_training.py
SampleHook = Callable[[int, nn.Module], tuple[dict[str, float], dict[str, np.ndarray]]]


def pick_precision(name: str, device: torch.device, env: DistEnv | None = None) -> tuple[str, str]:
    """train.precision as it will run on `device`, and why ("auto" decides; other names stay). Under
    torchrun every rank measures, and bf16 is chosen only where all of them would choose it."""
    if name != "auto":
        return name, "as configured"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "this GPU has bf16"
        return "fp16", "this GPU has no bf16; fp16 with loss scaling"
    if device.type != "cpu":
        return "fp32", f"no mixed-precision speed-up measured on {device.type}"
    # What counts is speed, and CPUs without bf16 units emulate it (30x slower than fp32 on AVX2 alone).
    # Measured in turns, the best of each kept, so that another process's burst does not decide.
    best = {dtype: 0.0 for dtype in (torch.bfloat16, torch.float32)}
    for _ in range(3):
        for dtype in best:
            best[dtype] = max(best[dtype], measure_peak_flops(device, dtype, 512))
    ratio = best[torch.bfloat16] / best[torch.float32]
    env = env or DistEnv()
    if all_reduce_sum(torch.tensor([float(ratio > 1.2)]), env).item() == env.world_size:
        return "bf16", f"a bf16 matrix product runs {ratio:.1f}x as fast as fp32 on this CPU"
    return "fp32", f"a bf16 matrix product runs only {ratio:.2f}x as fast as fp32 on this CPU (no bf16 units)"


class Trainer:
    """Trains `model` on what `objective` returns for the train loader's batches; see the module's doc."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        objective: Objective,
        train_loader: DataLoader,
        valid_loader: DataLoader | None,  # None: no validation pieces, so no evaluation and `best` is `latest`
        run_dir: Path,
        device: torch.device,
        env: DistEnv,
        rng: RandomState,
        peak_flops: float = 1.0,
        progress: bool = True,
        log: Callable[[str], None] = print,
        profile_steps: tuple[int, int] | None = None,
        sample_hook: SampleHook | None = None,
    ):
        self.cfg, self.model, self.objective = cfg, model, objective
        self.run_dir, self.device, self.env = run_dir, device, env
        self.train_loader = train_loader
        self.sampler: TokenBudgetBatchSampler = train_loader.batch_sampler
        self.progress, self.profile_steps = progress and env.is_main, profile_steps
        # Rank 0 alone prints and writes samples; with a progress bar, messages go above it, not through it.
        self.log = message_writer(self.progress, log) if env.is_main else (lambda s: None)
        self.sample_hook = sample_hook if env.is_main else None
        self.meter = ThroughputMeter(peak_flops)
        self.step = 0
        self.clock = Clock(cfg.max_minutes, env, device)
        self.micro_batches = 0  # consumed from the sampler: the data position to resume from
        self.windows_seen = 0  # by all ranks together, for the epoch count
        self.evaluate_first = False  # evaluate before the first step (fine-tuning: where the weights start)
        self.step_metrics: dict[str, float] = {}
        self.validation = Validation(cfg, valid_loader, env, device, self.log)
        self.stability = Stability(cfg.stability, self._rollback, self.log)
        self.optimizer = build_optimizer(model, cfg, device)
        schedule = lr_factor(cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: schedule(s, self.clock.spent()) * self.lr_scale
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.parts: dict[str, Stateful] = {  # what a checkpoint keeps besides the weights and the position
            "optimizer": OptimizerState(model, self.optimizer),
            "scheduler": self.scheduler,
            "scaler": self.scaler,
            "validation": self.validation,
            "stability": self.stability,
            "rng": rng,
        }
        if hasattr(objective, "state_dict"):  # an objective with state of its own (the vae_gan critic)
            self.parts["objective"] = objective
        self.checkpoints = Checkpointer(run_dir, model, self, cfg.keep_last, env, self.log)

    @property
    def lr_scale(self) -> float:
        """The LR's factor on top of its schedule: the plateau's drops times the recoveries' back-offs."""
        return self.validation.lr_scale * self.stability.lr_scale

    @property
    def counters(self) -> dict[str, int]:
        return self.stability.counters

    @property
    def valid_loader(self) -> DataLoader | None:
        return self.validation.loader

    def num_parameters(self) -> int:
        return sum(p.numel() for p in unwrap(self.model).parameters())

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything besides the weights that a resumed run needs to continue exactly: the loop's position
        and each part's own state_dict."""
        position = {
            "step": self.step,
            "seconds": self.clock.seconds,  # at the top, as format 1 kept them: what a time budget has spent
            "micro_batches": self.micro_batches,
            "windows_seen": self.windows_seen,
        }
        return {**position, **{name: part.state_dict() for name, part in self.parts.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.clock.seconds = int(state["step"]), float(state["seconds"])
        self.micro_batches, self.windows_seen = int(state["micro_batches"]), int(state["windows_seen"])
        self.sampler.load_state_dict({"batches": self.micro_batches})
        for name, part in self.parts.items():
            part.load_state_dict(state[name])

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint folder: weights, optimizer, schedule, data position and RNG."""
        self.checkpoints.load(path)

    def _rollback(self) -> Path | None:
        """Back to the newest intact checkpoint's weights and optimizer, for Stability; None if there is none."""
        path = self.checkpoints.newest_intact()
        if path is not None:
            self.checkpoints.load_weights(path)
            self.parts["optimizer"].load_state_dict(load_trainer_state(path)["optimizer"])
        return path

    # ---- the step ------------------------------------------------------------------------------
    def _autocast(self) -> AbstractContextManager:
        if self.cfg.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The objective on a batch moved to this device, under autocast at train.precision."""
        with self._autocast():
            return self.objective({k: v.to(self.device, non_blocking=True) for k, v in batch.items()})

    def evaluate(self) -> dict[str, float]:
        return self.validation.evaluate(self.model, self._forward)

    def _train_step(self, micro: list[dict[str, torch.Tensor]]) -> tuple[float, float, bool]:
        """One optimizer step over micro-batches; returns (mean loss, grad norm, stepped)."""
        weights = [float(b["weight"].sum()) for b in micro]
        total = float(all_reduce_sum(torch.tensor([sum(weights)], device=self.device), self.env))
        loss_sum = torch.zeros((), device=self.device)
        extras: dict[str, float] = {}
        for i, batch in enumerate(micro):
            # DDP averages gradients over ranks; scaling by world/total makes the step the mean over
            # every target of every micro-batch on every rank, whatever the padding.
            share = weights[i] * self.env.world_size / max(total, 1.0)
            with gradient_sync(self.model, i == len(micro) - 1):
                out = self._forward(batch)
                self.scaler.scale(out["loss"] * share).backward()
            loss_sum += out["loss"].detach().float() * weights[i]
            for k, v in out.items():
                if k != "loss":
                    extras[k] = extras.get(k, 0.0) + float(v) * weights[i]
        loss = float(all_reduce_sum(loss_sum, self.env)) / max(total, 1.0)
        # The objective's other metrics (this rank's micro-batches), for the train log.
        self.step_metrics = {k: v / max(sum(weights), 1.0) for k, v in extras.items()}
        self.scaler.unscale_(self.optimizer)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip or math.inf)
        grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP: a DTensor
        finite = math.isfinite(loss) and math.isfinite(grad_norm)
        if self.scaler.is_enabled():
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)  # skips the step itself on inf/NaN gradients
            self.scaler.update()
            stepped = finite and self.scaler.get_scale() >= scale
        else:
            stepped = finite
            if stepped:
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if stepped:
            self.scheduler.step()  # the schedule follows optimizer steps, not skipped ones
        return loss, grad_norm, stepped

    # ---- the loop ------------------------------------------------------------------------------
    def _epoch(self) -> float:
        return self.windows_seen / self.sampler.num_windows

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.train_loader:
            self.micro_batches += 1
            yield batch

    def fit(self) -> dict[str, float]:
        """Train to max_steps (or max_epochs, max_minutes, early stopping); returns the last train and valid
        metrics."""
        cfg, world = self.cfg, self.env.world_size
        report = Reporter(
            self.run_dir, self.step, cfg.max_steps, self.env.is_main, self.progress, self.log, self.clock.spent
        )
        self.model.train()
        batches = self._batches()
        train: dict[str, float] = {}
        valid: dict[str, float] = {}
        flops_per_token = getattr(unwrap(self.model), "flops_per_token", lambda n: 0.0)
        self.meter.reset()
        self.clock.restart()
        evaluates = self.validation.enabled
        with report, profiler(self.run_dir / "tb" / "profile", self.profile_steps, self.step) as prof:
            if self.evaluate_first and self.step == 0 and evaluates:
                valid = self.evaluate()
                report.valid(self.step, valid, "step 0 (the starting weights)")
            while self.step < cfg.max_steps:
                t0 = time.perf_counter()
                micro = [next(batches) for _ in range(cfg.grad_accum)]
                data_seconds = time.perf_counter() - t0
                if hasattr(self.objective, "set_step"):  # objectives with schedules (KL annealing)
                    self.objective.set_step(self.step)
                loss, grad_norm, stepped = self._train_step(micro)
                self.step += 1
                self.clock.tick()
                self.stability.watch(self.step, loss, grad_norm, stepped)
                batch, length = micro[0]["input_ids"].shape
                windows, positions = batch * len(micro) * world, sum(b["input_ids"].numel() for b in micro) * world
                self.windows_seen += windows
                self.meter.add(windows, positions, positions * flops_per_token(length), data_seconds)
                if prof is not None:
                    prof.step()
                report.step({"loss": loss, **self.step_metrics} if stepped else None)

                final = (
                    self.step == cfg.max_steps
                    or (cfg.max_epochs is not None and self._epoch() >= cfg.max_epochs)
                    or self.clock.spent() >= 1
                )
                if self.step % cfg.log_interval == 0 or final:
                    lr, epoch = self.scheduler.get_last_lr()[0], self._epoch()
                    more = {"lr": lr, "grad_norm": grad_norm, "epoch": epoch, "seq_len": length, "batch_size": batch}
                    more |= {**self.meter.read(), **memory_stats(self.device), **self.counters}
                    train = report.train(self.step, more, final)
                improved = stop = False
                if evaluates and (self.step % cfg.eval_interval == 0 or final):
                    valid = self.evaluate()
                    improved, stop = self.validation.judge(valid)
                    report.valid(self.step, valid, f"step {self.step}")
                if self.sample_hook and cfg.sample_interval and (self.step % cfg.sample_interval == 0 or final):
                    report.samples(self.step, *self.sample_hook(self.step, unwrap(self.model)))
                    self.model.train()  # the hook generated in eval mode
                if improved or final or stop or self.step % cfg.save_interval == 0:
                    metrics = {f"valid_{k}": v for k, v in valid.items()}
                    self.checkpoints.save(self.step, metrics, best=improved or not evaluates)
                self.clock.tick()
                if final or stop:
                    break
        return {**{f"train_{k}": v for k, v in train.items()}, **{f"valid_{k}": v for k, v in valid.items()}}
