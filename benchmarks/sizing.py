"""The model sized for the budget (aurl.training.sizing): the scaling law's fit, and the choice it leads to.

--fit: trains rungs of the ladder (--shapes) for step counts (--steps) in windows of --seq-len tokens,
--batch-tokens a step, on the Bach chorales prepared with configs/demo.yaml, with the demo's task mix and each
rung's learning rate, each run counted in steps (so a busy machine changes its time, not its loss), and keeps
them in --runs (reused when there). Then fits aurl.training.sizing.Law through the final validation loss of
every run in --runs and prints the runs, the law (the constants to keep in aurl.training.sizing.LAW) and how
far each run lies from it.

--table: this machine's tokens per second for each rung, window and batch (measured now, nothing cached), the
share of the measured matmul peak that is (MFU) and, for 3, 10 and 60 minutes (--minutes), the tokens each
would train, its predicted validation loss under the kept LAW, and the choice; --profile SHAPE ... adds
torch.profiler's busiest operators of a training step of those rungs.

Run: .venv/bin/python benchmarks/sizing.py --data data/bach-chorales --fit --runs DIR [--shapes 128x2 192x3]
         [--steps 150 450]
     .venv/bin/python benchmarks/sizing.py --data data/bach-chorales --table [--minutes 3 10 60]
         [--profile 192x3 256x4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from machine import machine  # benchmarks/machine.py

from aurl.config import load_config
from aurl.data.dataset import PreparedDataset
from aurl.modes import build_model
from aurl.training.distributed import pick_device
from aurl.training.monitor import measure_peak_flops
from aurl.training.run import train
from aurl.training.sizing import (
    LADDER,
    LAW,
    Law,
    candidates,
    parameters,
    settings,
    step_throughput,
    throughputs,
)
from aurl.training.trainer import pick_precision

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
SHAPES = {shape.name: shape for shape in LADDER}


def fit(args: argparse.Namespace) -> None:
    runs = Path(args.runs)
    for name in args.shapes:
        for steps in args.steps:
            run = runs / f"{name}-{steps}-seq{args.seq_len}-batch{args.batch_tokens}"
            if (run / "result.json").is_file():
                continue
            sets = [
                f"data.dataset={args.data}",
                f"data.seq_len={args.seq_len}",
                f"train.batch_tokens={args.batch_tokens}",
                f"train.max_steps={steps}",
                f"train.eval_interval={steps}",
                f"train.save_interval={steps}",
                "train.sample_interval=0",
            ]
            config = SHAPES[name].applied(load_config(DEMO, sets))
            metrics = train(config, run, overwrite=True, progress=False, log=lambda _: None)
            done = {"shape": name, "steps": steps, "seq_len": args.seq_len, "batch_tokens": args.batch_tokens}
            (run / "result.json").write_text(json.dumps({**done, **metrics}))
    vocab = PreparedDataset(args.data).tables.vocab_size
    config = load_config(DEMO, [f"data.dataset={args.data}"])
    points, rows = [], []
    for result in sorted(runs.glob("*/result.json")):
        done = json.loads(result.read_text())
        shape, batch, window = SHAPES[done["shape"]], done["batch_tokens"], done["seq_len"]
        count, tokens = parameters(config, shape, vocab), done["steps"] * batch
        points.append((count, tokens, batch, window, done["valid_loss"]))
        rows.append((shape.name, window, batch, count, done["steps"], tokens, done["valid_loss"]))
    law = Law.fit(points)
    print(f"## Scaling law fit: {len(points)} runs of configs/demo.yaml on the chorales\n{machine()}\n")
    print(
        "| shape | window | tokens a step | parameters | steps | tokens | valid loss (nats/token) | law |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for name, window, batch, count, steps, tokens, loss in rows:
        predicted = law.loss(count, tokens, batch, window)
        print(
            f"| {name} | {window} | {batch} | {count / 1e6:.2f}M | {steps} | {tokens / 1e6:.2f}M | {loss:.4f} | "
            f"{predicted:.4f} |"
        )
    print(f"\nLAW = {law!r}")


def table(args: argparse.Namespace) -> None:
    config = load_config(DEMO, [f"data.dataset={args.data}", "train.max_steps=1000000000"])
    vocab = PreparedDataset(args.data).tables.vocab_size
    device = pick_device(config.train.device)
    precision, _ = pick_precision(config.train.precision, device)
    print(f"## Sized for the budget: configs/demo.yaml's data, {precision}\n{machine()}\n{LAW!r}\n")
    with tempfile.TemporaryDirectory() as tmp:
        rates = throughputs(config, vocab, device, precision, Path(tmp) / "cache.json", max(args.minutes), print)
    peak = measure_peak_flops(device, torch.bfloat16 if precision == "bf16" else torch.float32)
    print(f"matmul peak measured: {peak / 1e9:.0f} GFLOP/s\n")
    print(
        "| shape | window | tokens a step | parameters | tokens/s | MFU | "
        + " | ".join(f"{m:g} min: tokens, predicted loss" for m in args.minutes)
        + " |"
    )
    print("|---|---|---|---|---|---|" + "---|" * len(args.minutes))
    options = {minutes: {c.setting: c for c in candidates(config, rates, vocab, minutes)} for minutes in args.minutes}
    for setting in settings(config):
        if setting.name not in rates:
            continue
        cells = []
        for minutes in args.minutes:
            c = options[minutes].get(setting)
            cells.append(f"{c.tokens / 1e6:.2f}M, {c.loss:.3f}" if c else "under 100 steps")
        with torch.device("meta"):
            flops = build_model(setting.applied(config).model, vocab).flops_per_token(setting.seq_len)
        mfu = rates[setting.name] * flops / peak
        print(
            f"| {setting.shape.name} | {setting.seq_len} | {setting.batch_tokens} | "
            f"{parameters(config, setting.shape, vocab) / 1e6:.2f}M | {rates[setting.name]:,.0f} | {mfu:.0%} | "
            + " | ".join(cells)
            + " |"
        )
    for minutes in args.minutes:
        best = min(options[minutes].values(), key=lambda c: c.loss)
        print(f"- {minutes:g} minutes: {best.setting.name}")
    for name in args.profile:
        print(f"\n### One training step of {name}: where the time goes (torch.profiler, 3 steps)\n")
        with torch.profiler.profile() as prof:
            step_throughput(config, SHAPES[name], vocab, device, precision)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the Bach chorales prepared with configs/demo.yaml")
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--runs", help="--fit: where the runs are kept (and reused)")
    parser.add_argument("--shapes", nargs="+", default=["128x2", "192x3", "256x4"], choices=list(SHAPES))
    parser.add_argument("--steps", nargs="+", type=int, default=[150, 450])
    parser.add_argument("--seq-len", type=int, default=512, help="--fit: the runs' window (data.seq_len)")
    parser.add_argument("--batch-tokens", type=int, default=4096, help="--fit: the runs' train.batch_tokens")
    parser.add_argument("--minutes", nargs="+", type=float, default=[3.0, 10.0, 60.0])
    parser.add_argument("--profile", nargs="*", default=[], choices=list(SHAPES), help="--table: profile these")
    args = parser.parse_args()
    if args.fit:
        if not args.runs:
            parser.error("--fit needs --runs DIR")
        fit(args)
    if args.table:
        table(args)


if __name__ == "__main__":
    main()
