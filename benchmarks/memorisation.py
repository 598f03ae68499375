"""Calibrating the memorisation check: how many notes in one run do pieces share with the training set
when nobody copied, and when somebody did?

Sets measured against the training split of the Bach chorales (`builtin:bach-chorales:train`):
- the held-out chorales (valid + test): new music by the same composer in the same style, no copying
  (except where Bach harmonised one melody twice);
- each training chorale cut to its first half and fed back as "generated": copying by construction;
- any folders of generated MIDI given with --generated (e.g. samples of the demo model).
For each set: percentiles of the longest shared run, and how many pieces each threshold flags.

Run: .venv/bin/python benchmarks/memorisation.py [--generated runs/demo/samples/final ...]
"""

from __future__ import annotations

import argparse

import numpy as np

from aurl.evaluation.memorisation import TrainingIndex
from aurl.evaluation.report import COPY_THRESHOLD, load_set

THRESHOLDS = (16, 24, 32, 48, 64, 96)


def quiet(_: str) -> None:
    """Progress lines of the corpus conversion are not part of the table."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", nargs="*", default=[], help="folders or globs of generated MIDI")
    args = parser.parse_args()
    train = load_set("builtin:bach-chorales:train", quiet)[1]
    index = TrainingIndex(train)
    held_out = [s for split in ("valid", "test") for s in load_set(f"builtin:bach-chorales:{split}", quiet)[1]]
    sets = {
        "held-out chorales": held_out,
        "training chorales, first half fed back": [s[: len(s) // 2] for s in train],
        **{source: load_set(source, quiet)[1] for source in args.generated},
    }
    flags = " | ".join(f">= {t}" for t in THRESHOLDS)
    header = f"| set | pieces | notes (median) | run p50 | p90 | max | {flags} |"
    print(f"longest run of notes shared with one of {len(train)} training chorales; flagged counts per threshold")
    print(header)
    print("|" + "|".join("---" for _ in range(header.count("|") - 1)) + "|")
    for name, seqs in sets.items():
        runs = np.array([index.longest_shared_run(s) for s in seqs])
        flagged = " | ".join(f"{int((runs >= t).sum())}" for t in THRESHOLDS)
        print(
            f"| {name} | {len(seqs)} | {int(np.median([len(s) for s in seqs]))} | {np.median(runs):.0f} "
            f"| {np.percentile(runs, 90):.0f} | {runs.max()} | {flagged} |",
            flush=True,
        )
    print(f"aurl evaluate flags a run of {COPY_THRESHOLD} notes or more (--copy-threshold)")


if __name__ == "__main__":
    main()
