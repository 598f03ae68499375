"""The demo model on chorales converted two ways, trained the same minutes: what bar lines in the right place
are worth.

Each prepared dataset (e.g. one converted by an older aurl, whose pickups shift every bar line, and one by
today's converter) trains configs/demo.yaml for --minutes. Printed per dataset: optimizer steps, the bits per
note of its held-out (valid) chorales under the best checkpoint (the same pieces and notes either way, only
their bar lines differ), and of --samples free samples (the run's generate settings, the meter held as by
default): the mean feature overlap (aurl evaluate's features) with the held-out chorales as converted today
(builtin:bach-chorales:valid), and the time-signature changes per sample beside those of the chorales.

Run: .venv/bin/python benchmarks/meter.py --data old=DIR_A --data new=DIR_B [--minutes 3] [--samples 8] [--set K=V]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import symusic

from aurl.config import load_config
from aurl.evaluation.compare import compare_sets
from aurl.evaluation.features import HISTOGRAM_FEATURES, SCALAR_FEATURES, meter_changes, piece_features
from aurl.evaluation.likelihood import likelihood
from aurl.evaluation.report import midi_files
from aurl.generation.requests import generate
from aurl.training.run import train

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
FEATURES = SCALAR_FEATURES + HISTOGRAM_FEATURES


def features(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        row = piece_features(symusic.Score(str(path)))
        row["id"] = str(path)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True, metavar="LABEL=DIR", help="a prepared dataset")
    parser.add_argument("--minutes", type=float, default=3.0, help="training minutes per dataset (default 3)")
    parser.add_argument("--samples", type=int, default=8, help="free samples per model (default 8)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    args = parser.parse_args()
    datasets = dict(item.split("=", 1) for item in args.data)
    reference_files = midi_files("builtin:bach-chorales:valid", lambda s: None)
    reference = features(reference_files)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, data in datasets.items():
            run = Path(tmp) / label
            sets = [f"data.dataset={data}", "train.sample_interval=0", f"train.max_minutes={args.minutes}", *args.set]
            train(load_config(DEMO, [*sets, "train.max_steps=1000000"]), run, progress=False, log=lambda s: None)
            steps = max(json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines())
            rate = likelihood(run, data)["bits_per_note"]
            free = generate(run, Path(tmp) / f"{label}-free", num=args.samples, log=lambda s: None)
            written = features([s.midi for s in free])
            comparison = compare_sets(written, reference, FEATURES)
            overlap = float(np.nanmean([comparison[name]["overlap"] for name in FEATURES]))
            changes = np.mean([meter_changes(symusic.Score(str(s.midi))) for s in free])
            rows.append((label, data, steps, rate, overlap, changes))
    own = np.mean([meter_changes(symusic.Score(str(p))) for p in reference_files])
    settings = f", {' '.join(args.set)}" if args.set else ""
    held_out = len(reference)
    print(f"### The demo model{settings}, {args.minutes:g} minutes of training on each dataset ({held_out} held-out)")
    print("| dataset | steps | bits/note (held-out) | mean feature overlap | meter changes per sample |")
    print("|---|---|---|---|---|")
    for label, data, steps, rate, overlap, changes in rows:
        print(f"| {label} ({data}) | {steps} | {rate:.3f} | {overlap:.3f} | {changes:.2f} |")
    print(f"held-out chorales: {own:.2f} meter changes per piece")


if __name__ == "__main__":
    main()
