"""Throughput (samples/s, tokens/s, MFU, data-wait share), memory, the clock of a time budget, anomaly
detection and profiling for training."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections import deque
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from aurl.training.distributed import DistEnv, all_reduce_sum


def measure_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048) -> float:
    """FLOP/s of a large matrix product on `device`: the denominator of MFU when none is configured."""
    # A generator of its own: measuring the machine leaves the run's random streams where they are.
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device, dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def memory_stats(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process, and the accelerator's allocator counters where there is one (MB)."""
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = {"mem_peak_rss_mb": peak_kb / (1024 * 1024 if sys.platform == "darwin" else 1024)}
    if device.type == "cuda":
        stats.update(
            mem_allocated_mb=torch.cuda.memory_allocated(device) / 2**20,
            mem_reserved_mb=torch.cuda.memory_reserved(device) / 2**20,
            mem_peak_allocated_mb=torch.cuda.max_memory_allocated(device) / 2**20,
        )
    elif device.type == "mps":
        stats.update(mem_allocated_mb=torch.mps.current_allocated_memory() / 2**20)
    return stats


class ThroughputMeter:
    """Accumulates work and time between log intervals; `read()` returns rates and resets."""

    def __init__(self, peak_flops: float):
        self.peak_flops = peak_flops
        self.reset()

    def reset(self) -> None:
        self.samples = self.tokens = 0
        self.flops = self.data_seconds = 0.0
        self.start = time.perf_counter()

    def add(self, samples: int, tokens: int, flops: float, data_seconds: float) -> None:
        self.samples += samples
        self.tokens += tokens
        self.flops += flops
        self.data_seconds += data_seconds

    def read(self) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        rates = {
            "samples_per_s": self.samples / seconds,
            "tokens_per_s": self.tokens / seconds,
            "mfu": self.flops / seconds / self.peak_flops,
            "data_wait_share": self.data_seconds / seconds,
        }
        self.reset()
        return rates


class Clock:
    """Seconds of training over every resume (what train.max_minutes counts), added up at each tick; under
    torchrun the ranks' mean, so that a time budget ends every rank at the same step."""

    def __init__(self, max_minutes: float | None, env: DistEnv, device: torch.device):
        self.max_minutes, self.env, self.device = max_minutes, env, device
        self.seconds = 0.0
        self.last = time.perf_counter()

    def restart(self) -> None:
        """Count from now (not the time spent between building the trainer and training)."""
        self.last = time.perf_counter()

    def tick(self) -> None:
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        if self.max_minutes and self.env.enabled:
            elapsed = float(all_reduce_sum(torch.tensor([elapsed], device=self.device), self.env)) / self.env.world_size
        self.seconds += elapsed

    def spent(self) -> float:
        """Share of train.max_minutes used so far (0 without a time budget)."""
        return self.seconds / (60 * self.max_minutes) if self.max_minutes else 0.0


class SpikeDetector:
    """Flags a gradient norm above `factor` times the running median of the last `window` finite norms."""

    def __init__(self, factor: float, window: int):
        self.factor = factor
        self.norms: deque[float] = deque(maxlen=window)

    def __call__(self, norm: float) -> bool:
        spike = len(self.norms) >= 5 and norm > self.factor * statistics.median(self.norms)
        self.norms.append(norm)
        return spike


def profiler(folder: Path, steps: tuple[int, int] | None, step: int) -> AbstractContextManager:
    """torch.profiler over training steps start+1..stop of `steps`, counted from `step` (the run's position),
    its trace written to `folder` for TensorBoard; a context giving None without `steps`."""
    if not steps:
        return nullcontext(None)
    start, stop = steps
    # One warm-up step before the traced ones.
    schedule = torch.profiler.schedule(wait=max(0, start - step - 1), warmup=1, active=stop - start, repeat=1)
    handler = torch.profiler.tensorboard_trace_handler(str(folder))
    return torch.profiler.profile(schedule=schedule, on_trace_ready=handler, record_shapes=True)
