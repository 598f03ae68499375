"""Throughput (samples/s, tokens/s, MFU, data-wait share), memory, and anomaly detection for training."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections import deque

import torch


def measure_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048) -> float:
    """FLOP/s of a large matrix product on `device`: the denominator of MFU when none is configured."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
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


class SpikeDetector:
    """Flags a gradient norm above `factor` times the running median of the last `window` finite norms."""

    def __init__(self, factor: float, window: int):
        self.factor = factor
        self.norms: deque[float] = deque(maxlen=window)

    def __call__(self, norm: float) -> bool:
        spike = len(self.norms) >= 5 and norm > self.factor * statistics.median(self.norms)
        self.norms.append(norm)
        return spike
