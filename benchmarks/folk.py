"""Melodies that are not chorales, harmonised: music21's folk corpora, each metre reported apart.

A chorale model meets other melodies as soon as a user brings one. This draws `per_metre` tunes of each of
2/4, 3/4, 4/4 and 6/8 from the Essen folk songs and O'Neill's Irish tunes (music21's corpus, seeded, 16 to 96
notes, one voice), converts each as `aurl generate --accompany` reads a user's score, sets it in the soprano's
octave (its median nearest G4), has each run harmonise it (the melody kept, alto, tenor and bass written) and
prints, per metre: voice-leading faults per 100 notes (aurl.evaluation.harmony), the takes whose written
voices are all lively (each at least half the melody's notes and 6 pitches) and those whose written voices all
hold between half and twice the melody's notes.

A model that has only seen the chorales' bars (4/4 and 3/4, 32 and 24 positions) fails in 6/8, whose bar MidiTok
counts in eighth-note beats (48 positions); `data.rebar` (aurl.data.rebar) is the cure measured beside the
others (benchmarks/cocreate_timed.py --models rebar).

Run: .venv/bin/python benchmarks/folk.py --runs layout=runs/a frames=runs/b [--per-metre 4] [--temperature 0.7]
(benchmarks/cocreate_timed.py prints the same table for the runs it trains, `--folk`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import symusic
from machine import machine  # benchmarks/machine.py

from aurl.data.builtin import CORPORA as BUILTIN
from aurl.data.scores import load_notation
from aurl.evaluation.harmony import FAULTS, voice_leading_faults
from aurl.generation.generate import Trained
from aurl.generation.requests import Accompany, generate

METRES = ("2/4", "3/4", "4/4", "6/8")
CORPORA = ("essen", "oneill")
LOWER = (41, 42, 43)


def metre(score: symusic.Score) -> str:
    signature = score.time_signatures[0] if len(score.time_signatures) else None
    return f"{signature.numerator}/{signature.denominator}" if signature else "4/4"


def folk_melodies(folder: Path, per_metre: int, seed: int = 0) -> list[tuple[Path, str]]:
    """`per_metre` tunes of each metre, written to `folder` as MIDI (one track, the run's soprano program)."""
    pieces = [piece for corpus in CORPORA for piece in BUILTIN[corpus].pieces()]
    order = np.random.default_rng(seed).permutation(len(pieces))
    folder.mkdir(parents=True, exist_ok=True)
    chosen: dict[str, list[Path]] = {m: [] for m in METRES}
    for index in order:
        if all(len(paths) >= per_metre for paths in chosen.values()):
            break
        piece = pieces[index]
        converted, _ = load_notation(piece.source, piece.number)
        if converted is None or len(converted.midi.tracks) != 1:
            continue
        score = converted.midi
        found = metre(score)
        if found not in chosen or len(chosen[found]) >= per_metre or not 16 <= len(score.tracks[0].notes) <= 96:
            continue
        # set in the soprano's octave, as a musician would before harmonising: the melody's own notes count
        # among a take's range faults
        octaves = round((67 - float(np.median(score.tracks[0].notes.numpy()["pitch"]))) / 12)
        score = score.shift_pitch(12 * octaves)
        path = folder / piece.name.replace("/", "_")
        score.dump_midi(str(path))
        chosen[found].append(path)
    return [(path, m) for m in METRES for path in chosen[m]]


def measured(take: symusic.Score, melody_notes: int) -> tuple[dict[str, float], bool, bool]:
    """(the take's faults, whether its written voices are all lively, whether they all hold between half and
    twice the melody's notes)."""
    voices = [t for t in take.tracks if not t.is_drum and t.program in LOWER]
    counts = [len(t.notes) for t in voices]
    pitches = [len({n.pitch for n in t.notes}) for t in voices]
    complete = len(voices) == len(LOWER)
    lively = complete and all(c >= melody_notes / 2 and p >= 6 for c, p in zip(counts, pitches, strict=True))
    balanced = complete and all(melody_notes / 2 <= c <= 2 * melody_notes for c in counts)
    return voice_leading_faults(take), lively, balanced


def folk_table(runs: dict[str, Path], melodies: list[tuple[Path, str]], out: Path, **settings) -> None:
    """Print the table: each run harmonises each melody once with `settings` (temperature, seed)."""
    print(f"\n### Folk melodies harmonised ({len(melodies)} tunes of music21's Essen and O'Neill collections)")
    print("| model | metre | tunes | faults/100 notes | " + " | ".join(name.replace("_", " ") for name in FAULTS)
          + " | lively takes | takes with every voice between half and twice the melody's notes |")  # fmt: skip
    print("|---|---|---|---|" + "---|" * len(FAULTS) + "---|---|")
    for label, run in runs.items():
        trained, rows = Trained.load(run), []
        for path, group in melodies:
            made = generate(trained, out / label / path.stem, log=None, num=1,
                            request=Accompany(song=str(path), keep=[0], add=list(LOWER)), **settings)  # fmt: skip
            notes = len(symusic.Score(str(path)).tracks[0].notes)
            rows.append((group, *measured(symusic.Score(str(made[0].midi)), notes)))
        for group in [*METRES, "all"]:
            chosen = [r for r in rows if group in (r[0], "all")]
            if not chosen:
                continue
            total = sum(r[1]["notes"] for r in chosen)
            rate = {k: 100 * sum(r[1][k] for r in chosen) / max(1, total) for k in ("total", *FAULTS)}
            kinds = " | ".join(f"{rate[name]:.2f}" for name in FAULTS)
            print(
                f"| {label} | {group} | {len(chosen)} | {rate['total']:.2f} | {kinds} "
                f"| {sum(r[2] for r in chosen)} of {len(chosen)} | {sum(r[3] for r in chosen)} of {len(chosen)} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="LABEL=RUN_DIR of each trained run")
    parser.add_argument("--per-metre", type=int, default=4, help="tunes of each metre (default 4)")
    parser.add_argument("--temperature", type=float, default=0.7, help="(default 0.7, the co-creation default)")
    parser.add_argument("--seed", type=int, default=0, help="of the tunes drawn and the sampling")
    args = parser.parse_args()
    runs = {label: Path(run) for label, run in (spec.split("=", 1) for spec in args.runs)}
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        melodies = folk_melodies(Path(tmp) / "melodies", args.per_metre, args.seed)
        folk_table(runs, melodies, Path(tmp) / "takes", temperature=args.temperature, seed=args.seed)


if __name__ == "__main__":
    main()
