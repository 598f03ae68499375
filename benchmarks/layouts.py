"""Layouts side by side: the voice leading a small model learns from the same chorales in the same steps.

Trains, on the chorales and from each --train-seeds seed, for --steps (or --minutes) each:
- layout: today's time-ordered REMI at the demo's settings (the task mix, no anticipation);
- grid: the voice grid (tokenizer.kind VoiceGrid, aurl.data.grid), one frame per onset and one token per voice,
  trained on plain windows (a harmonisation forces the soprano in its slots: no task mix to learn);
- ties: the voice grid with a held note restated with its pitch in every frame (tokenizer.voice_ties), so that
  every voice's pitch now, not only its changes, sits at a fixed place;
- gridrebar: the voice grid trained on the chorales plus each one again with the bar lines of 2/4 (those in
  4/4) or 6/8 (those in 3/4) (data.rebar), so that the metres of folk tunes are bars it has seen;
and prints one table: training steps per second; tokens per note and bits per note of the source's notes of the
held-out four-part chorales (each read as a free piece: the same files and notes for every layout, so the bits
compare); voice-leading faults per 100 notes of harmonisations of their sopranos (alto, tenor and bass written,
--samples per soprano at --temperature), all kinds together and each, beside Bach's; lively takes (every written
voice at least half the soprano's notes and 6 pitches); the feature overlap with Bach's. Then the folk table
(benchmarks/folk.py: tunes in 2/4, 3/4, 4/4 and 6/8, each metre apart).

Run: .venv/bin/python benchmarks/layouts.py --data data/bach-chorales --runs DIR [--steps 1200 | --minutes 10]
     [--train-seeds 0 1] [--models layout grid] [--samples 1] [--temperature 0.7] [--folk 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from cocreate import features_of  # benchmarks/cocreate.py
from cocreate_timed import faults, harmonised, held_out_chorales, lively, overlap, quiet, trained
from folk import folk_melodies, folk_table  # benchmarks/folk.py
from machine import machine  # benchmarks/machine.py

from aurl.config import load_config
from aurl.data.dataset import PreparedDataset
from aurl.data.prepare import prepare
from aurl.evaluation.harmony import FAULTS
from aurl.evaluation.likelihood import likelihood


def source_bits(run: Path, chorales: list[Path], folder: Path) -> tuple[float, float]:
    """(bits per note, tokens per note) of `chorales` read as free pieces by the run, prepared its way."""
    (folder / "midi").mkdir(parents=True, exist_ok=True)
    for path in chorales:
        target = folder / "midi" / path.name
        if not target.exists():
            target.symlink_to(path)
    # every file as it is: none held back, none prepared again in other metres (data.rebar)
    config = load_config(run / "config.yaml", ["data.valid_fraction=0", "data.test_fraction=0", "data.rebar={}"])
    prepare(str(folder / "midi"), folder / "data", config, workers=1, progress=False, log=quiet)
    files = PreparedDataset(folder / "data").manifest["files"]
    tokens = sum(f["length"] for f in files) / sum(f["notes"] for f in files)
    return likelihood(run, folder / "data", split="train")["bits_per_note"], tokens


def steps_per_second(run: Path) -> float:
    """The median training rate the run logged, in steps per second."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    batch = load_config(run / "config.yaml").train.batch_tokens
    return statistics.median(r["tokens_per_s"] for r in rows if "tokens_per_s" in r) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the chorales prepared with configs/demo.yaml")
    parser.add_argument("--minutes", type=float, default=10.0, help="training minutes per model (default 10)")
    parser.add_argument("--steps", type=int, help="train each model this many steps instead (fair on a busy machine)")
    parser.add_argument("--runs", help="keep the runs here, RUNS/s<seed>/<model> (and reuse those already trained)")
    models = ["layout", "grid", "ties", "gridrebar", "frames"]
    parser.add_argument("--models", nargs="+", default=["layout", "grid"], choices=models)
    parser.add_argument("--train-seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--samples", type=int, default=1, help="harmonisations per soprano (default 1)")
    parser.add_argument("--temperature", type=float, default=0.7, help="(default 0.7, the co-creation default)")
    parser.add_argument("--seed", type=int, default=0, help="of the sampling and the folk tunes drawn")
    parser.add_argument("--folk", type=int, default=4, help="folk tunes of each metre harmonised (default 4; 0: none)")
    args = parser.parse_args()
    chorales = held_out_chorales()
    reference = features_of(chorales)
    bach = faults(chorales)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.runs or tmp)
        runs = {
            (label, seed): trained(label, args.data, args.minutes, args.steps, seed, root / f"s{seed}")
            for seed in args.train_seeds
            for label in args.models
        }
        budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} minutes"
        print(f"## Layouts side by side: {len(chorales)} held-out four-part chorales, each model trained {budget}")
        print(f"{machine()}; harmonisations: {args.samples} per soprano at temperature {args.temperature}")
        print(
            "| model | seed | steps/s | tokens/note | bits/note | faults/100 notes (Bach) | "
            + " | ".join(name.replace("_", " ") for name in FAULTS)
            + " | lively takes | feature overlap |"
        )
        print("|---|---|---|---|---|---|" + "---|" * len(FAULTS) + "---|---|")
        for (label, seed), run in runs.items():
            bits, per_note = source_bits(run, chorales, Path(tmp) / f"{label}-{seed}-held-out")
            written, _ = harmonised(run, chorales, 0, args, Path(tmp) / f"{label}-{seed}")
            found = faults(written)
            kinds = " | ".join(f"{found[name]:.2f} ({bach[name]:.2f})" for name in FAULTS)
            print(
                f"| {label} | {seed} | {steps_per_second(run):.2f} | {per_note:.2f} | {bits:.3f} "
                f"| {found['total']:.2f} ({bach['total']:.2f}) | {kinds} | {lively(written)} of {len(written)} "
                f"| {overlap(written, reference):.3f} |"
            )
        print("targets: faults <= 3x Bach's (2.9); every take lively; feature overlap >= 0.75")
        if args.folk:
            melodies = folk_melodies(Path(tmp) / "folk", args.folk, args.seed)
            chosen = {f"{label} (seed {seed})": run for (label, seed), run in runs.items()}
            folk_table(chosen, melodies, Path(tmp) / "folk-takes", temperature=args.temperature, seed=args.seed)
            print("target: faults <= 2.9 per 100 notes in every metre")


if __name__ == "__main__":
    main()
