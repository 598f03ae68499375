"""Quality per minute: the demo model trained for the same wall time in fp32 and in train.precision auto.

Each run gets --minutes of training (train.max_minutes; the LR schedule follows the budget) on the
prepared Bach chorales. Printed per run: the precision auto chose and why, optimizer steps, the median
tokens/s of the logged intervals, and the bits per note of the held-out chorales under the best
checkpoint (the demo's 300 steps, for comparison, with --steps-run).

Run: .venv/bin/python benchmarks/minutes.py --data data/bach-chorales [--minutes 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from aurl.config import load_config
from aurl.evaluation.likelihood import likelihood
from aurl.training.run import train

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the Bach chorales prepared with configs/demo.yaml")
    parser.add_argument("--minutes", type=float, default=5.0, help="training minutes per run (default 5)")
    parser.add_argument("--steps-run", action="store_true", help="also train the demo's 300 fp32 steps")
    args = parser.parse_args()
    budget = [f"train.max_minutes={args.minutes}", "train.max_steps=1000000"]
    runs = {"fp32": [*budget, "train.precision=fp32"], "auto": [*budget, "train.precision=auto"]}
    if args.steps_run:
        runs["fp32, 300 steps (the demo)"] = ["train.precision=fp32"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, sets in runs.items():
            said: list[str] = []
            run = Path(tmp) / f"run{len(rows)}"
            sets = [f"data.dataset={args.data}", "train.sample_interval=0", "train.eval_interval=50", *sets]
            train(load_config(DEMO, sets), run, progress=False, log=said.append)
            chosen = next((line.split(": ", 1)[1] for line in said if line.startswith("train.precision auto")), "")
            log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            steps = max(m["step"] for m in log)
            speed = statistics.median(m["tokens_per_s"] for m in log if m["split"] == "train")
            rows.append((label, chosen, steps, speed, likelihood(run, args.data)["bits_per_note"]))
    print(f"### The demo model, {args.minutes:g} minutes of training each")
    print("| run | precision chosen | steps | tokens/s (median) | bits/note (held-out chorales) |")
    print("|---|---|---|---|---|")
    for label, chosen, steps, speed, rate in rows:
        print(f"| {label} | {chosen or '-'} | {steps} | {speed:,.0f} | {rate:.3f} |")


if __name__ == "__main__":
    main()
