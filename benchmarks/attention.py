"""Full, sliding-window and hierarchical attention: training tokens/s and peak activation memory.

The demo-sized model (d_model 256, 4 layers) takes forward + backward steps on one sequence of 2,048 and
8,192 tokens with a Bar token every 16 positions. Each row runs in its own process, so that its peak
memory (VmHWM, reset after a warm-up step) is its own. Run: .venv/bin/python benchmarks/attention.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from aurl.config import ModelConfig
from aurl.models.transformer import Transformer

VOCAB, BAR = 486, 4


def child(attention: str, length: int, window: int, steps: int) -> dict:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=256, n_layers=4, n_heads=4, context=length, attention=attention, window=window)
    model = Transformer(cfg, VOCAB, bar_ids=[BAR])
    x = torch.randint(5, VOCAB, (1, length + 1))
    x[:, ::16] = BAR

    def step() -> None:
        logits = model(x[:, :-1])
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).backward()
        model.zero_grad(set_to_none=True)

    step()
    base = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"tokens_per_s": length / statistics.median(times), "act_mb": _status("VmHWM") - base}


def _status(field: str) -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("ATTENTION", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.window, args.steps)))
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; window {args.window}, "
        f"Bar every 16 tokens; median of {args.steps} steps"
    )
    print(f"| {'attention':<12} | {'length':>6} | {'tokens/s':>8} | {'act. MB':>7} |")
    print(f"|{'-' * 14}|{'-' * 8}|{'-' * 10}|{'-' * 9}|")
    for length in (2048, 8192):
        for attention in ("full", "sliding", "hierarchical"):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                attention,
                str(length),
                "--window",
                str(args.window),
                "--steps",
                str(args.steps),
            ]
            r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            print(f"| {attention:<12} | {length:>6} | {r['tokens_per_s']:8,.0f} | {r['act_mb']:7.0f} |")


if __name__ == "__main__":
    main()
