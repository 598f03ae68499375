"""Fine-tuned from the base model versus trained from scratch, on 30 Bach chorales, for the same minutes.

A user's few dozen files are played by 30 chorales of the train split of builtin:bach-chorales (a fixed
choice: evenly spaced by name); the usual held-out chorales (the valid split) validate and are scored.
Both runs get the same wall time (train.max_minutes): from scratch with the demo's recipe
(configs/demo.yaml), fine-tuned with configs/finetune.yaml from --base (configs/base.yaml, pretrained on
builtin:music21, which leaves the chorales out). Printed: bits per note of the held-out chorales under
each run's best checkpoint; 8 samples of each, their skipped tokens and mean feature overlap with the
held-out chorales; the base model's training time and its own validation bits per note.

Run: .venv/bin/python benchmarks/finetune.py --base runs/base --base-data data/music21 [--minutes 5]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import symusic
import torch

from aurl.config import DataConfig, load_config
from aurl.data.corpus import resolve_source, split_of
from aurl.data.prepare import prepare
from aurl.evaluation.compare import compare_sets
from aurl.evaluation.features import HISTOGRAM_FEATURES, SCALAR_FEATURES, piece_features
from aurl.evaluation.likelihood import likelihood
from aurl.generation.requests import generate
from aurl.training.checkpoint import STATE_FILE, resolve_checkpoint
from aurl.training.run import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FEATURES = SCALAR_FEATURES + HISTOGRAM_FEATURES
TRAIN_FILES = 30


def quiet(_: str) -> None:
    """Progress lines are not part of the tables."""


def chorale_set(folder: Path) -> Path:
    """30 training chorales and every held-out one, under their own names (so their splits stay)."""
    d = DataConfig()
    files = resolve_source("builtin:bach-chorales", workers=2, log=quiet)
    train_files = [f for f in files if split_of(f.name, d.valid_fraction, d.test_fraction) == "train"]
    chosen = train_files[:: len(train_files) // TRAIN_FILES][:TRAIN_FILES]
    held_out = [f for f in files if split_of(f.name, d.valid_fraction, d.test_fraction) != "train"]
    folder.mkdir(parents=True)
    for f in [*chosen, *held_out]:
        shutil.copy(f.path, folder / f.name)
    return folder


def overlap(samples: list[Path], reference: list[dict]) -> float:
    generated = [{**piece_features(symusic.Score(str(p))), "id": str(p)} for p in samples]
    comparison = compare_sets(generated, reference, FEATURES)
    return float(np.nanmean([comparison[name]["overlap"] for name in FEATURES]))


def trained_minutes(run: Path) -> float:
    state = torch.load(resolve_checkpoint(run, "latest") / STATE_FILE, map_location="cpu", weights_only=True)
    return state["seconds"] / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, type=Path, help="base run (configs/base.yaml)")
    parser.add_argument("--base-data", required=True, type=Path, help="its prepared dataset (builtin:music21)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training minutes of each run (default 5)")
    parser.add_argument("--samples", type=int, default=8, help="samples written by each run (default 8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "prepared"
        fractions = ["data.valid_fraction=0.05", "data.test_fraction=0.05"]  # the usual held-out chorales
        prepare(str(chorale_set(work / "chorales")), data, load_config(CONFIGS / "finetune.yaml", fractions), 2, False)
        held_out = [p for p in (work / "chorales").iterdir() if split_of(p.name, 0.05, 0.05) == "valid"]
        reference = [{**piece_features(symusic.Score(str(p))), "id": str(p)} for p in held_out]
        budget = [f"data.dataset={data}", f"train.max_minutes={args.minutes}", "train.max_steps=1000000"]
        runs = {
            "from scratch (configs/demo.yaml)": load_config(
                CONFIGS / "demo.yaml", [*fractions, *budget, "train.sample_interval=0", "train.eval_interval=25"]
            ),
            f"fine-tuned from {args.base} (configs/finetune.yaml)": load_config(
                CONFIGS / "finetune.yaml", [*fractions, *budget, f"train.init_from={args.base}"]
            ),
        }
        rows = []
        for i, (label, config) in enumerate(runs.items()):
            run = work / f"run{i}"
            train(config, run, progress=False, log=quiet)
            rate = likelihood(run, data)["bits_per_note"]
            samples = generate(run, work / f"samples{i}", num=args.samples, batch_size=args.samples, log=quiet)
            skipped = sum(s.skipped_tokens for s in samples)
            rows.append(
                (
                    label,
                    trained_minutes(run),
                    rate,
                    len(samples),
                    skipped,
                    overlap([s.midi for s in samples], reference),
                )
            )
        base_rate = likelihood(args.base, args.base_data)["bits_per_note"]
    print(f"### {TRAIN_FILES} training chorales, {len(held_out)} held-out chorales scored")
    print("| run | minutes trained | bits/note (held-out) | samples | skipped tokens | mean feature overlap |")
    print("|---|---|---|---|---|---|")
    for label, minutes, rate, n, skipped, lap in rows:
        print(f"| {label} | {minutes:.1f} | {rate:.3f} | {n} | {skipped} | {lap:.3f} |")
    gain = 1 - rows[1][2] / rows[0][2]
    print(f"fine-tuned vs from scratch: {100 * gain:.1f}% fewer bits per note (target: at least 15%)")
    print(
        f"base model {args.base}: {trained_minutes(args.base):.1f} minutes of training, "
        f"{base_rate:.3f} bits/note on its own validation split"
    )


if __name__ == "__main__":
    main()
