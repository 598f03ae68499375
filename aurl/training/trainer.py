"""The training loop. It knows nothing about music or model internals: it calls `objective(batch)`.

One step: take grad_accum micro-batches → forward/backward each under autocast (gradients synchronised
across ranks on the last only, each weighted by its share of the step's targets) → unscale, clip →
skip the step if anything is non-finite, else AdamW step → LR schedule. Around it: logging, evaluation,
early stopping, checkpoints, and recovery from repeated non-finite steps.
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
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.utils.data import DataLoader
from tqdm import tqdm

from aurl.config import TrainConfig
from aurl.data.dataset import EvalBatchSampler, TokenBudgetBatchSampler
from aurl.errors import AurlError, CheckpointError
from aurl.training.checkpoint import (
    latest_good_checkpoint,
    load_trainer_state,
    prune_checkpoints,
    save_checkpoint,
    tied_names,
)
from aurl.training.distributed import DistEnv, all_reduce_floats, all_reduce_sum, gradient_sync, unwrap
from aurl.training.logger import MetricsLogger
from aurl.training.monitor import SpikeDetector, ThroughputMeter, measure_peak_flops, memory_stats

Objective = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
# (step, unwrapped model) → (metrics, images (H, W, 3) uint8) of pieces it wrote: see evaluation/during_training.py
SampleHook = Callable[[int, nn.Module], tuple[dict[str, float], dict[str, np.ndarray]]]
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


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


def lr_factor(cfg: TrainConfig) -> Callable[[int, float], float]:
    """LR multiplier per optimizer step: linear warmup to 1, then the configured decay to min_lr / lr.
    The decay follows the run's progress: the larger of steps / max_steps and `spent`, the share of
    train.max_minutes used so far (0 without a time budget). `plateau` holds at 1 here; the trainer
    lowers it on stalled validation."""
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


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # Weight decay on matrices only: decaying norms' gains and biases only hurts.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = cfg.fused if cfg.fused is not None else device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)


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
    """The validation loader over this rank's share of its first `batches` batches (see EvalBatchSampler):
    train.eval_batches counts the batches of all ranks together."""
    sampler = EvalBatchSampler(len(loader.dataset), loader.batch_size, batches, env.rank, env.world_size)
    return DataLoader(
        loader.dataset,
        batch_sampler=sampler,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        generator=loader.generator,
    )


class TrainingError(AurlError):
    """Training cannot go on (e.g. non-finite steps with no checkpoint to return to)."""


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        objective: Objective,
        train_loader: DataLoader,
        valid_loader: DataLoader | None,  # None: no validation pieces, so no evaluation and `best` is `latest`
        run_dir: Path,
        device: torch.device,
        env: DistEnv | None = None,
        peak_flops: float = 1.0,
        progress: bool = True,
        log: Callable[[str], None] = print,
        profile_steps: tuple[int, int] | None = None,
        sample_hook: SampleHook | None = None,
    ):
        self.cfg, self.model, self.objective = cfg, model, objective
        self.sample_hook = sample_hook if (env or DistEnv()).is_main else None  # rank 0 writes the samples
        self.train_loader = train_loader
        self.sampler: TokenBudgetBatchSampler = train_loader.batch_sampler
        self.run_dir, self.device, self.env = run_dir, device, env or DistEnv()
        self.valid_loader = None if valid_loader is None else _shared_out(valid_loader, cfg.eval_batches, self.env)
        self.progress, self.profile_steps = progress and self.env.is_main, profile_steps
        self.log = log if self.env.is_main else (lambda s: None)
        if self.progress:  # messages go above the progress bar instead of through it
            self.log = tqdm.write
        self.optimizer = build_optimizer(model, cfg, device)
        self.schedule = lr_factor(cfg)
        self.lr_scale = 1.0  # plateau and non-finite-recovery reductions
        self.seconds = 0.0  # of training so far, over every resume: what train.max_minutes counts
        self._clock = time.perf_counter()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: self.schedule(s, self._spent()) * self.lr_scale
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.meter = ThroughputMeter(peak_flops)
        self.spikes = SpikeDetector(cfg.stability.spike_factor, cfg.stability.spike_window)
        es = cfg.early_stopping
        self.stop_tracker = Stall(es.mode, es.min_delta)
        self.best_valid = Stall("min", 0.0)  # which checkpoint is `best`: lowest validation loss
        self.plateau = Stall("min", 0.0)
        self.step = 0
        self.evaluate_first = False  # evaluate before the first step (fine-tuning: where the weights start)
        self.micro_batches = 0  # consumed from the sampler: the data position to resume from
        self.windows_seen = 0  # by all ranks together, for the epoch count
        self.bad_in_a_row = 0
        self.counters = {"skipped_steps": 0, "grad_spikes": 0, "recoveries": 0}
        self.tied = tied_names(unwrap(model))
        self.step_metrics: dict[str, float] = {}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in unwrap(self.model).parameters())

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything besides the weights that a resumed run needs to continue exactly."""
        _, keys, pos, has_gauss, gauss = np.random.get_state()
        rng = {
            "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "gauss": (has_gauss, gauss)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if self.env.enabled:  # every rank draws its own dropout masks: keep each rank's generator
            gathered: list[Any] = [None] * self.env.world_size
            dist.all_gather_object(gathered, rng)
            rng = {"ranks": gathered}
        return {
            "step": self.step,
            "seconds": self.seconds,
            "micro_batches": self.micro_batches,
            "windows_seen": self.windows_seen,
            "lr_scale": self.lr_scale,
            "bad_in_a_row": self.bad_in_a_row,
            "counters": dict(self.counters),
            "optimizer": get_optimizer_state_dict(self.model, self.optimizer, options=FULL),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "early_stopping": self.stop_tracker.state_dict(),
            "best_valid": self.best_valid.state_dict(),
            "plateau": self.plateau.state_dict(),
            "rng": rng,
            # an objective with state of its own (the vae_gan critic and its optimizer)
            "objective": self.objective.state_dict() if hasattr(self.objective, "state_dict") else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.micro_batches = int(state["step"]), int(state["micro_batches"])
        self.seconds = float(state.get("seconds", 0.0))
        self.windows_seen = int(state["windows_seen"])
        self.lr_scale, self.bad_in_a_row = float(state["lr_scale"]), int(state["bad_in_a_row"])
        self.counters.update(state["counters"])
        set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"], options=FULL)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.stop_tracker.load_state_dict(state["early_stopping"])
        self.best_valid.load_state_dict(state["best_valid"])
        self.plateau.load_state_dict(state["plateau"])
        self.sampler.load_state_dict({"batches": self.micro_batches})
        if state["objective"]:
            self.objective.load_state_dict(state["objective"])
        rng = state["rng"]["ranks"][self.env.rank] if "ranks" in state["rng"] else state["rng"]
        random.setstate(rng["python"])
        state_np = rng["numpy"]
        np.random.set_state(
            ("MT19937", state_np["keys"].numpy().astype(np.uint32), state_np["pos"], *state_np["gauss"])
        )
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint folder: weights, optimizer, schedule, data position and RNG."""
        self.load_weights(path)
        self.load_state_dict(load_trainer_state(path))

    def load_weights(self, path: Path) -> None:
        """A (verified) checkpoint's weights into the wrapped or sharded model."""
        file = path / "model.safetensors"
        weights = load_file(str(file))
        expected = set(unwrap(self.model).state_dict()) - self.tied  # a tied tensor is stored once
        try:
            if set(weights) != expected:
                raise ValueError(f"{len(set(weights) ^ expected)} tensor names differ")
            # strict=False only for the tied names left out above
            set_model_state_dict(self.model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
        except (RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"{file}: weights do not fit this model ({str(err).splitlines()[0][:120]}); "
                "resume with the run's own model settings"
            ) from None

    def save(self, metrics: dict[str, float], best: bool) -> None:
        weights = get_model_state_dict(self.model, options=FULL)  # collective under FSDP: every rank calls
        weights = {k: v for k, v in weights.items() if k not in self.tied}
        state = self.state_dict()
        if self.env.is_main:
            folder = self.run_dir / "checkpoints"
            save_checkpoint(folder, self.step, weights, state, metrics, best)
            prune_checkpoints(folder, self.cfg.keep_last)

    # ---- loop ----------------------------------------------------------------------------------
    def _autocast(self):
        if self.cfg.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _spent(self) -> float:
        """Share of train.max_minutes used so far (0 without a time budget)."""
        return self.seconds / (60 * self.cfg.max_minutes) if self.cfg.max_minutes else 0.0

    def _tick(self) -> None:
        """Count the time since the last tick; under torchrun the ranks' mean, so that a time budget ends
        every rank at the same step."""
        now = time.perf_counter()
        elapsed, self._clock = now - self._clock, now
        if self.cfg.max_minutes and self.env.enabled:
            elapsed = float(all_reduce_sum(torch.tensor([elapsed], device=self.device), self.env)) / self.env.world_size
        self.seconds += elapsed

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Target-weighted mean of the objective's metrics over the first eval_batches validation batches,
        shared out over the ranks. Each metric's sum (metric x targets, per batch) and the target count are
        summed over the ranks before the one division, so any number of ranks gives the value of one
        process over the same windows."""
        self.model.eval()
        sums: dict[str, float] = {}
        total = 0.0
        for counted, batch in zip(self.valid_loader.batch_sampler.counted, self.valid_loader, strict=True):
            with self._autocast():
                out = self.objective(self._to_device(batch))
            n = float(batch["weight"].sum()) if counted else 0.0  # a batch that only keeps FSDP in step
            total += n
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
        self.model.train()
        keys = list(sums)  # the objective's order, the same on every rank
        total, *summed = all_reduce_floats([total, *(sums[k] for k in keys)], self.env, self.device)
        return {k: v / max(1.0, total) for k, v in zip(keys, summed, strict=True)}

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
            with gradient_sync(self.model, i == len(micro) - 1), self._autocast():
                out = self.objective(self._to_device(batch))
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

    def _recover(self) -> None:
        """After nan_patience non-finite steps in a row: back to the last good checkpoint, lower LR."""
        try:
            path = latest_good_checkpoint(self.run_dir, self.log)
        except AurlError:
            raise TrainingError(
                f"{self.bad_in_a_row} non-finite steps in a row at step {self.step} and no checkpoint to return "
                "to; lower train.lr or use train.precision fp32"
            ) from None
        self.load_weights(path)
        set_optimizer_state_dict(self.model, self.optimizer, load_trainer_state(path)["optimizer"], options=FULL)
        self.lr_scale *= self.cfg.stability.lr_backoff
        self.bad_in_a_row = 0
        self.counters["recoveries"] += 1
        self.log(f"warning: reloaded {path.name} after non-finite steps; LR scaled to {self.lr_scale:g}x")

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.train_loader:
            self.micro_batches += 1
            yield batch

    def _profiler(self):
        if not self.profile_steps or not self.env.is_main:
            return nullcontext(None)
        start, stop = self.profile_steps
        # One warm-up step before the traced ones, so the trace covers steps start+1..stop.
        schedule = torch.profiler.schedule(wait=max(0, start - self.step - 1), warmup=1, active=stop - start, repeat=1)
        handler = torch.profiler.tensorboard_trace_handler(str(self.run_dir / "tb" / "profile"))
        return torch.profiler.profile(schedule=schedule, on_trace_ready=handler, record_shapes=True)

    def fit(self) -> dict[str, float]:
        """Train to max_steps (or max_epochs, max_minutes, early stopping); returns the last train and valid
        metrics."""
        cfg = self.cfg
        logger = MetricsLogger(self.run_dir, purge_step=self.step + 1) if self.env.is_main else None
        self.model.train()
        batches = self._batches()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", unit="step", disable=not self.progress)
        train_metrics: dict[str, float] = {}
        valid: dict[str, float] = {}
        loss_sum, loss_n = 0.0, 0
        extra_sums: dict[str, float] = {}
        flops_per_token = getattr(unwrap(self.model), "flops_per_token", lambda n: 0.0)
        self.meter.reset()
        self._clock = time.perf_counter()
        evaluates = self.valid_loader is not None
        if self.evaluate_first and self.step == 0 and evaluates:
            valid = self.evaluate()
            self._report_valid(logger, valid, "step 0 (the starting weights)")
        try:
            with self._profiler() as prof:
                while self.step < cfg.max_steps:
                    t0 = time.perf_counter()
                    micro = [next(batches) for _ in range(cfg.grad_accum)]
                    data_seconds = time.perf_counter() - t0
                    if hasattr(self.objective, "set_step"):  # objectives with schedules (KL annealing)
                        self.objective.set_step(self.step)
                    loss, grad_norm, stepped = self._train_step(micro)
                    self.step += 1
                    self._tick()
                    self._watch(loss, grad_norm, stepped)
                    batch, length = micro[0]["input_ids"].shape
                    self.windows_seen += batch * len(micro) * self.env.world_size
                    positions = sum(b["input_ids"].numel() for b in micro) * self.env.world_size
                    self.meter.add(
                        batch * len(micro) * self.env.world_size,
                        positions,
                        positions * flops_per_token(length),
                        data_seconds,
                    )
                    if stepped:
                        loss_sum, loss_n = loss_sum + loss, loss_n + 1
                        for k, v in self.step_metrics.items():
                            extra_sums[k] = extra_sums.get(k, 0.0) + v
                    if prof is not None:
                        prof.step()
                    bar.update()

                    final = (
                        self.step == cfg.max_steps
                        or (cfg.max_epochs is not None and self._epoch() >= cfg.max_epochs)
                        or self._spent() >= 1
                    )
                    if self.step % cfg.log_interval == 0 or final:
                        train_metrics = {
                            "loss": loss_sum / max(1, loss_n),
                            **{k: v / max(1, loss_n) for k, v in extra_sums.items()},
                            "lr": self.scheduler.get_last_lr()[0],
                            "grad_norm": grad_norm,
                            "epoch": self._epoch(),
                            "seq_len": length,
                            "batch_size": batch,
                            **self.meter.read(),
                            **memory_stats(self.device),
                            **self.counters,
                        }
                        loss_sum, loss_n, extra_sums = 0.0, 0, {}
                        if logger:
                            logger.log(self.step, "train", train_metrics)
                        if not self.progress:  # no bar (e.g. a CI log): one key=value line per interval
                            keys = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "seq_len", "batch_size")
                            self.log(f"step={self.step} " + " ".join(f"{k}={train_metrics[k]:.4g}" for k in keys))
                        bar.set_postfix(
                            loss=f"{train_metrics['loss']:.3f}", tok_s=f"{train_metrics['tokens_per_s']:,.0f}"
                        )

                    improved = stop = False
                    if evaluates and (self.step % cfg.eval_interval == 0 or final):
                        valid = self.evaluate()
                        improved = self.best_valid.update(valid["loss"])
                        stop = self._after_eval(valid)
                        self._report_valid(logger, valid, f"step {self.step}")
                    if self.sample_hook and cfg.sample_interval and (self.step % cfg.sample_interval == 0 or final):
                        self._samples(logger)
                    if improved or final or stop or self.step % cfg.save_interval == 0:
                        self.save({f"valid_{k}": v for k, v in valid.items()}, best=improved or not evaluates)
                    self._tick()
                    if final or stop:
                        break
        finally:
            bar.close()
            if logger:
                logger.close()
        return {**{f"train_{k}": v for k, v in train_metrics.items()}, **{f"valid_{k}": v for k, v in valid.items()}}

    def _report_valid(self, logger: MetricsLogger | None, valid: dict[str, float], when: str) -> None:
        if logger:
            logger.log(self.step, "valid", valid)
        shown = {k: v for k, v in valid.items() if "/" not in k}  # not every latent dimension
        self.log(f"{when}: " + "  ".join(f"valid {k} {v:.4f}" for k, v in shown.items()))

    def _samples(self, logger: MetricsLogger | None) -> None:
        """Let the sample hook write pieces from the current weights; log what it measured of them."""
        metrics, images = self.sample_hook(self.step, unwrap(self.model))
        self.model.train()
        if logger:
            logger.log(self.step, "samples", metrics)
            for tag, image in images.items():
                logger.image(self.step, f"samples/{tag}", image)

    def _epoch(self) -> float:
        return self.windows_seen / self.sampler.num_windows

    def _watch(self, loss: float, grad_norm: float, stepped: bool) -> None:
        """Count non-finite steps (recovering after too many in a row) and warn on gradient-norm spikes."""
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.counters["skipped_steps"] += 1
            self.bad_in_a_row += 1
            self.log(f"warning: step {self.step}: non-finite loss or gradient; optimizer step skipped")
            if self.bad_in_a_row >= self.cfg.stability.nan_patience:
                self._recover()
            return
        self.bad_in_a_row = 0
        if stepped and self.spikes(grad_norm):
            self.counters["grad_spikes"] += 1
            self.log(f"warning: step {self.step}: gradient norm {grad_norm:.3g} spiked over its running median")

    def _after_eval(self, valid: dict[str, float]) -> bool:
        """Plateau LR and early stopping bookkeeping; True when training should stop."""
        cfg = self.cfg
        stalled = cfg.schedule == "plateau" and not self.plateau.update(valid["loss"])
        if stalled and self.plateau.evals > cfg.plateau_patience:
            self.lr_scale *= cfg.plateau_factor
            self.plateau.evals = 0
            self.log(f"validation loss stalled: LR scaled to {self.lr_scale:g}x")
        es = cfg.early_stopping
        if not es.enabled:
            return False
        if es.metric not in valid:
            raise TrainingError(f"train.early_stopping.metric {es.metric!r}: not one of {sorted(valid)}")
        self.stop_tracker.update(valid[es.metric])
        if self.stop_tracker.evals >= es.patience:
            self.log(f"early stopping: valid {es.metric} has not improved for {es.patience} evaluations")
            return True
        return False
