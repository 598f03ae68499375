"""Training throughput and memory: the aurl Trainer beside a plain PyTorch loop of the same model.

For configs/demo.yaml's model and a ~10M-parameter one, at window lengths 512 and 2048, prints tokens/s,
MFU against the measured fp32 (or bf16) matrix-product peak, the share of step time spent waiting for data,
and peak activation memory with and without activation checkpointing. Each measurement runs in its own
process so that peak memory (VmHWM, reset after a warm-up step) belongs to it alone.

Run: .venv/bin/python benchmarks/train.py --data data/bach-chorales   (prepared by `make demo`)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from aurl.config import load_config
from aurl.data.dataset import PreparedDataset
from aurl.models.transformer import Transformer
from aurl.training.distributed import DistEnv
from aurl.training.monitor import measure_peak_flops
from aurl.training.run import build_trainer

MODELS = {
    "demo (3.3M)": [],
    "10M": ["model.d_model=384", "model.n_layers=6", "model.n_heads=6"],
}


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := current RSS


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def _config(args: argparse.Namespace, model: str, length: int, extra: list[str]):
    sets = [
        f"data.dataset={args.data}",
        f"data.seq_len={length}",
        "model.context=2048",
        "model.dropout=0",
        "train.batch_tokens=8192",
        "train.min_batch=1",
        f"train.max_steps={args.steps + 1}",
        "train.log_interval=1000",
        "train.eval_interval=100000",
        "train.save_interval=100000",
        f"train.peak_flops={args.peak}",
        *MODELS[model],
        *extra,
    ]
    return load_config(Path(__file__).parents[1] / "configs" / "demo.yaml", sets)


def run_trainer(args: argparse.Namespace) -> dict:
    config = _config(args, args.model, args.length, args.set)
    data = PreparedDataset(args.data)
    run_dir = Path(tempfile.mkdtemp(dir=args.tmp))
    trainer = build_trainer(config, data, run_dir, DistEnv(), torch.device("cpu"), False, lambda s: None)
    batches = trainer._batches()
    trainer._train_step([next(batches)])  # warm-up: allocates gradients and optimizer state
    trainer.step = 1
    base = _rss_mb("VmRSS")
    _reset_peak()
    trainer.meter.reset()
    start = time.perf_counter()
    metrics = trainer.fit()
    seconds = time.perf_counter() - start
    return {
        "tokens_per_s": metrics["train_tokens_per_s"],
        "mfu": metrics["train_mfu"],
        "data_wait": metrics["train_data_wait_share"],
        "act_mb": _rss_mb("VmHWM") - base,
        "seconds": seconds,
        "params": trainer.num_parameters(),
    }


def run_plain(args: argparse.Namespace) -> dict:
    """The same model and batch shape in the plainest loop: random tokens, AdamW, clip, cross-entropy."""
    config = _config(args, args.model, args.length, args.set)
    torch.manual_seed(0)
    model = Transformer(config.model, 486)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    batch = max(1, 8192 // args.length)
    x = torch.randint(0, 486, (batch, args.length + 1))

    def step() -> None:
        logits = model(x[:, :-1])
        F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    tps = batch * args.length * args.steps / sum(times)
    return {"tokens_per_s": tps, "mfu": tps * model.flops_per_token(args.length) / args.peak}


def child(args: argparse.Namespace) -> None:
    result = run_plain(args) if args.plain else run_trainer(args)
    print(json.dumps(result))


def measure(args: argparse.Namespace, model: str, length: int, plain: bool, sets: list[str], steps: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--model",
        model,
        "--length",
        str(length),
        "--data",
        args.data,
        "--steps",
        str(steps),
        "--peak",
        str(args.peak),
        "--tmp",
        args.tmp,
    ]
    if plain:
        cmd.append("--plain")
    for item in sets:
        cmd += ["--set", item]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/bach-chorales", help="a prepared dataset (demo tokenizer)")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per measurement")
    parser.add_argument("--repeats", type=int, default=1, help="median over this many runs of each row")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="demo (3.3M)", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, default=512, help=argparse.SUPPRESS)
    parser.add_argument("--peak", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", default="", help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    args.tmp = tempfile.mkdtemp(prefix="aurl-bench-")
    peaks = sorted(measure_peak_flops(torch.device("cpu")) for _ in range(5))
    args.peak = statistics.median(peaks)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; measured fp32 matmul peak {args.peak / 1e9:.0f} GFLOP/s "
        f"(median of 5; range {peaks[0] / 1e9:.0f}-{peaks[-1] / 1e9:.0f})"
    )
    print(f"{args.steps} timed steps of 8,192 tokens per row, median of {args.repeats} run(s)")
    header = (
        f"| {'model':<11} | {'len':>4} | {'loop':<25} | {'tokens/s':>8} | {'MFU':>5} | {'data wait':>9} "
        f"| {'act. MB':>7} | {'vs plain':>8} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|")

    def median_of(fn) -> dict:
        runs = [fn() for _ in range(args.repeats)]
        return {k: statistics.median(r[k] for r in runs) for k in runs[0]}

    for model in MODELS:
        for length in (512, 2048):
            plain = median_of(lambda: measure(args, model, length, True, [], args.steps))  # noqa: B023
            rows = [("plain PyTorch loop", plain)]
            for name, sets in (
                ("aurl Trainer", []),
                ("aurl + act. checkpointing", ["train.activation_checkpointing=every"]),
            ):
                rows.append((name, median_of(lambda: measure(args, model, length, False, sets, args.steps))))  # noqa: B023
            for name, r in rows:
                act = f"{r['act_mb']:7.0f}" if "act_mb" in r else f"{'-':>7}"
                wait = f"{r['data_wait']:9.1%}" if "data_wait" in r else f"{'-':>9}"
                ratio = r["tokens_per_s"] / plain["tokens_per_s"]
                print(
                    f"| {model:<11} | {length:>4} | {name:<25} | {r['tokens_per_s']:8,.0f} | {r['mfu']:5.1%} | {wait} "
                    f"| {act} | {ratio:7.3f}x |"
                )
    small = ["train.batch_tokens=2048"]
    bf16 = measure(args, "demo (3.3M)", 512, False, [*small, "train.precision=bf16"], 2)
    fp32 = measure(args, "demo (3.3M)", 512, False, small, 2)
    print(
        f"bf16 autocast vs fp32, demo model at 512 (2 steps of 2,048 tokens): {bf16['tokens_per_s']:,.0f} vs "
        f"{fp32['tokens_per_s']:,.0f} tokens/s ({bf16['tokens_per_s'] / fp32['tokens_per_s']:.2f}x)"
    )


if __name__ == "__main__":
    main()
