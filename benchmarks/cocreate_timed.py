"""Co-creation in the time-ordered stream measured on the Bach chorales' held-out (valid) split.

Trains, one after another and each for --minutes on the chorales prepared with configs/demo.yaml:
- plain: plain windows only (data.tasks={continue: 1}), the baseline for free generation;
- layout: the task mix (accompany, infill), each window saying its task after BOS, an infill reading the bars
  after its gap in a block before it (data.suffix_bars), given notes first at each onset, no anticipation
  (data.ahead_bars=0, the demo's settings), trained on every token but the task token;
- written: the same trained on the written notes alone (data.given_targets=false);
- anticipation: the task mix with the given notes anticipated a bar ahead (data.ahead_bars=1);
- controls: the demo's settings with MidiTok's eight attribute controls (tokenizer.controls), on the chorales
  prepared again with them (the vocabulary grows), which the benchmark does itself;
- rebar: the demo's settings on the chorales with their training pieces prepared again under other bar lines
  (data.rebar: 4/4 as 2/4, 3/4 as 6/8), so that bars of 2/4 and 6/8 are not new to it;
- frames: the demo's settings in onset frames (tokenizer.holds: every voice sounding through an onset restated
  there, aurl.data.frames), on the chorales prepared again with them.
(--runs DIR keeps the runs there and reuses those already trained.) Then prints, per model:

- harmonisation: bits per note of Bach's alto, tenor and bass given the soprano (laid out as a request:
  the soprano given and anticipated) against the same voices without it (a plain stream of the three),
  under the same model; voice-leading faults per 100 notes (aurl.evaluation.harmony), all kinds together
  and each, of harmonisations written for each soprano (--accompany: keep track 0, add 41 42 43) after 0, 1,
  3 and 10 revision sweeps (--sweeps), with the seconds each sweep took per chorale, beside Bach's own; the
  mean feature overlap (aurl evaluate's features) of the written harmonisations with the held-out chorales;
- infilling: bits per note of two true bars of one voice (--gaps of them drawn per chorale, never the first or
  last bars) laid out as an infill request, with both sides (the bars after the gap in its block, and anticipated where
  the model anticipates) and with the left side only (the chorale cut after the gap), in the same format;
- folk melodies (--folk, benchmarks/folk.py): tunes of music21's folk corpora in 2/4, 3/4, 4/4 and 6/8 harmonised,
  faults per 100 notes and the takes whose voices are lively, each metre apart;
- free generation: bits per note of the held-out chorales (plain windows) beside the plain model's, and the
  length in bars of 12 pieces written from nothing at the run's own settings;
- controls (the controls model): each soprano harmonised asking for Bach's own alto, tenor and bass controls,
  bar by bar and track by track; MidiTok then measures the voices written: the share equal to the request,
  and the share within one bin (numbers: each value off by at most one bin; sets of pitch classes or note
  values: at most one member different, two for note values); and the same shares without asking, the
  baseline the controls have to beat.

Run: .venv/bin/python benchmarks/cocreate_timed.py --data data/bach-chorales [--minutes 10 | --steps N]
     [--runs DIR] [--train-seed 0] [--samples 1] [--temperature 0.7] [--sweeps 0 1 3 10]
     [--models layout written anticipation controls frames rebar] [--folk 4]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import symusic
from cocreate import (  # benchmarks/cocreate.py (MMM): one way to score controls, one to compare features
    _bin_distance,
    features_of,
    mean_overlap,
    print_controls,
)
from folk import folk_melodies, folk_table, measured  # benchmarks/folk.py
from machine import machine  # benchmarks/machine.py
from miditok.utils import get_bars_ticks

from aurl.config import load_config
from aurl.data.controls import CONTROLS, controls_of, measure, ordered
from aurl.data.layout import Laid, Layout, task_ids
from aurl.data.prepare import prepare, tokenize_score
from aurl.evaluation.harmony import FAULTS, voice_leading_faults
from aurl.evaluation.likelihood import likelihood, written_nll
from aurl.evaluation.report import midi_files
from aurl.generation.generate import Trained, tokens_to_score
from aurl.generation.given import plan_of
from aurl.generation.requests import Accompany, generate
from aurl.generation.session import Session
from aurl.generation.timed import read_timed_song
from aurl.training.run import train

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
REBAR = 'data.rebar={"4/4": ["2/4"], "3/4": ["6/8"]}'  # the chorales again in the folk tunes' other metres
MODELS = {
    "plain": ["data.tasks={continue: 1}"],
    "layout": ["data.ahead_bars=0"],
    "written": ["data.ahead_bars=0", "data.given_targets=false"],
    "anticipation": ["data.ahead_bars=1"],
    "controls": [f"tokenizer.controls=[{', '.join(CONTROLS)}]"],
    "frames": ["data.ahead_bars=0", "tokenizer.holds=true"],
    "rebar": ["data.ahead_bars=0", REBAR],
    # benchmarks/layouts.py
    "grid": ["tokenizer.kind=VoiceGrid", "data.tasks={continue: 1}"],
    "ties": ["tokenizer.kind=VoiceGrid", "tokenizer.voice_ties=true", "data.tasks={continue: 1}"],
    "gridrebar": ["tokenizer.kind=VoiceGrid", "data.tasks={continue: 1}", REBAR],
}
SOPRANO, LOWER = 40, (41, 42, 43)


def quiet(_: str) -> None:
    """Progress lines are not part of the tables."""


def trained(label: str, data: str, minutes: float, steps: int | None, seed: int, runs: Path) -> Path:
    """The model's run: trained now for `minutes` (or `steps`) from `seed`, or found in `runs` from before."""
    run = runs / label
    if not (run / "config.yaml").is_file():
        budget = [f"train.max_steps={steps}"] if steps else [f"train.max_minutes={minutes}", "train.max_steps=1000000"]
        sets = ["train.sample_interval=0", f"train.seed={seed}", *budget]
        config = load_config(DEMO, [*sets, *MODELS[label]])
        # a vocabulary of its own, or more training pieces: the chorales prepared again
        if config.tokenizer.controls or config.tokenizer.holds or config.data.rebar or config.tokenizer.kind != "REMI":
            data = str(runs / f"{label}-data")
            prepare("builtin:bach-chorales", data, config, workers=2, progress=False)
        config = load_config(DEMO, [*sets, *MODELS[label], f"data.dataset={data}"])
        train(config, run, progress=False, log=quiet)
    return run


def held_out_chorales(count: int | None = None) -> list[Path]:
    """The held-out (valid) chorales in four parts, the first `count` of them (None: all)."""
    held_out = midi_files("builtin:bach-chorales:valid", quiet)
    return [p for p in held_out if len(symusic.Score(str(p)).tracks) == 4][:count]


def dataset_of(run: Path) -> str:
    return load_config(run / "config.yaml").data.dataset


def notes_of(layout: Layout, laid: Laid, programs: set[int]) -> int:
    """Notes of these programs a laid-out stream writes (not given, outside the anticipated blocks; a Program
    that opens a hold pair is no note)."""
    inside, count = False, 0
    for i, (t, given) in enumerate(zip(laid.ids, laid.given, strict=True)):
        if t in (layout.start, layout.end):
            inside = t == layout.start
        elif not inside and not given and layout.kind[t] == 3 and laid.ids[i + 1 : i + 2] != [layout.hold]:
            count += int(layout.value[t]) in programs
    return count


def bits(nats: float, notes: int) -> float:
    return nats / math.log(2) / max(1, notes)


def fitting(layout: Layout, bars, given, context: int) -> int:
    """The most bars from the first whose layout (with `given`) fits the model's context."""
    count = len(bars)
    while count > 1 and len(layout.window("accompany", bars, range(count), given).ids) + 1 > context:
        count -= 1
    return count


def harmonisation_bits(session: Session, chorales: list[Path]) -> tuple[float, float]:
    """Bits per note of Bach's A, T, B given the soprano, and without it, under the session's model."""
    layout, model = session.layout, session.decoder
    bos, context = session.tokenizer["BOS_None"], model.cfg.context
    given_nats = alone_nats = 0.0
    notes = 0
    for path in chorales:
        bars = read_timed_song(path, session.tokenizer, layout).bars
        with_soprano = lambda bar, program: program == SOPRANO  # noqa: E731
        count = fitting(layout, bars, with_soprano, context)
        laid = layout.window("accompany", bars, range(count), with_soprano)
        lower = layout.window("free", [bar.without({SOPRANO}) for bar in bars], range(count), None)
        given_nats += written_nll(model, bos, laid)
        alone_nats += written_nll(model, bos, lower)
        notes += notes_of(layout, lower, set(LOWER))
    return bits(given_nats, notes), bits(alone_nats, notes)


def infill_bits(session: Session, chorales: list[Path], seed: int, gaps: int) -> tuple[float, float, int]:
    """Bits per note of two true bars of one voice given both sides, and given the left side only, `gaps`
    of them drawn per chorale."""
    layout, model = session.layout, session.decoder
    bos, room = session.tokenizer["BOS_None"], session.room
    rng = np.random.default_rng(seed)
    both = left = 0.0
    notes = spans = 0
    for path in chorales:
        bars = read_timed_song(path, session.tokenizer, layout).bars
        if len(bars) < 4:
            continue
        for _ in range(gaps):
            with_right, left_only, count = _one_gap(layout, model, bos, room, bars, rng)
            both, left, notes, spans = both + with_right, left + left_only, notes + count, spans + 1
    return bits(both, notes), bits(left, notes), spans


def _one_gap(layout: Layout, model, bos: int, room: int, bars, rng: np.random.Generator) -> tuple[float, float, int]:
    """Nats of one drawn gap (two bars of one voice) with both sides and with the left side only, and its notes."""
    voice = int(rng.choice([SOPRANO, *LOWER]))
    first = int(rng.integers(1, len(bars) - 2))  # bars first, first + 1; one bar at least on each side
    gap = range(first, first + 2)

    def given(bar: int, program: int, gap: range = gap, voice: int = voice) -> bool:
        return bar not in gap or program != voice

    start = 0  # the bars before the gap that fit a training window with it and the bars after it
    moved = range(gap.start - start, gap.stop - start)
    while len(layout.window("infill", bars[start:], moved, shifted(given, start)).ids) + 1 > room:
        start += 1
        moved = range(gap.start - start, gap.stop - start)
    with_right = layout.window("infill", bars[start:], moved, shifted(given, start))
    left_only = layout.window("infill", bars[start : gap.stop], moved, shifted(given, start))  # nothing after
    nats = written_nll(model, bos, with_right), written_nll(model, bos, left_only)
    return *nats, notes_of(layout, with_right, {voice})


def shifted(given, start: int):
    """`given` for bars counted from `start`."""
    return lambda bar, program: given(bar + start, program)


def faults(paths: list[Path]) -> dict[str, float]:
    rows = [voice_leading_faults(symusic.Score(str(p))) for p in paths]
    notes = sum(r["notes"] for r in rows)
    return {name: 100 * sum(r[name] for r in rows) / notes for name in (*FAULTS, "total")}


def lively(paths: list[Path]) -> int:
    """Harmonisations whose written voices each have at least half the soprano's notes and 6 pitches."""
    count = 0
    for path in paths:
        score = symusic.Score(str(path))
        soprano = sum(len(t.notes) for t in score.tracks if t.program == SOPRANO)
        count += measured(score, soprano)[1]
    return count


def overlap(paths: list[Path], reference: list[dict]) -> float:
    return mean_overlap(features_of(paths), reference)


def harmonised(run: Path, chorales: list[Path], sweeps: int, args, out: Path) -> tuple[list[Path], float]:
    """The harmonisations written after `sweeps` sweeps, and the seconds they took."""
    written = []
    trained_run = Trained.load(run)
    began = time.perf_counter()
    for path in chorales:
        request = Accompany(song=str(path), add=list(LOWER), keep=[0])
        made = generate(
            trained_run, out / path.stem, log=None, request=request, num=args.samples,
            temperature=args.temperature, seed=args.seed, sweeps=sweeps,
        )  # fmt: skip
        written += [s.midi for s in made]
    return written, time.perf_counter() - began


def lengths(run: Path, out: Path, count: int = 12) -> list[int]:
    """Bars of `count` pieces written from nothing at the run's own settings."""
    samples = generate(run, out, log=None, num=count)
    return sorted(len(get_bars_ticks(symusic.Score(str(s.midi)))) for s in samples)


def controls_table(session: Session, chorales: list[Path], seed: int) -> None:
    """Harmonise each soprano asking for Bach's own alto, tenor and bass controls, then without asking."""
    tokenizer, layout = session.tokenizer, session.layout
    names = list(controls_of(tokenizer))
    hits = {asked: {n: [0, 0, 0] for n in names} for asked in (True, False)}  # exact, within one bin, requests
    bos = tokenizer["BOS_None"]
    for path in chorales:
        song = read_timed_song(path, tokenizer, layout)
        wanted = {}
        for track, program in zip((1, 2, 3), song.programs([1, 2, 3]), strict=True):
            alone = song.score.copy()
            alone.tracks = [song.score.tracks[track].copy()]
            wanted[program] = measure(tokenizer, tokenize_score(tokenizer, alone).tolist(), names)

        def steer(bar: int | None, program: int, wanted: dict = wanted) -> list[int]:
            whole, per_bar = wanted[program]
            if bar is None:
                return ordered(whole)
            return ordered({n: bars[bar] for n, bars in per_bar.items() if bar in bars})

        melody = song.bars_of([0], tokenizer, layout)
        for asked in (True, False):
            session.generator.manual_seed(seed)
            plan = plan_of(
                layout, melody, range(len(melody)), lambda bar, program: True, list(LOWER), steer if asked else None
            )
            prompt = [bos, *task_ids(tokenizer, "accompany")]
            (row,) = session.write([prompt], [plan], session.settings.max_tokens * 3 + plan.forced)
            score = tokens_to_score(tokenizer, layout.played(row))[0]
            for track in score.tracks:
                if track.program not in wanted:
                    continue
                alone = score.copy()
                alone.tracks = [track]
                got_whole, got_bar = measure(tokenizer, tokenize_score(tokenizer, alone).tolist(), names)
                whole, per_bar = wanted[track.program]
                pairs = [(n, whole[n], got_whole.get(n, [])) for n in whole]
                pairs += [(n, v, got_bar.get(n, {}).get(b, [])) for n, bars in per_bar.items() for b, v in bars.items()]
                for name, requested, found in pairs:
                    distance = _bin_distance(name, [tokenizer[t] for t in requested], [tokenizer[t] for t in found])
                    row_hits = hits[asked][name]
                    row_hits[0] += distance == 0
                    row_hits[1] += distance <= 1
                    row_hits[2] += 1
    print_controls(hits, names, len(chorales))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the chorales prepared with configs/demo.yaml")
    parser.add_argument("--minutes", type=float, default=10.0, help="training minutes per model (default 10)")
    parser.add_argument(
        "--steps", type=int, help="train each model this many steps instead (a fair budget on a busy machine)"
    )
    parser.add_argument("--runs", help="keep the runs here (and reuse those already trained)")
    choices = ["layout", "written", "anticipation", "controls", "frames", "rebar"]
    parser.add_argument("--models", nargs="+", default=["layout", "anticipation", "controls"], choices=choices)
    parser.add_argument("--samples", type=int, default=1, help="harmonisations per soprano (default 1)")
    parser.add_argument("--temperature", type=float, default=0.7, help="(default 0.7, the demo's)")
    parser.add_argument(
        "--sweeps", nargs="+", type=int, default=[0, 1, 3, 10], help="harmonise with these (default 0 1 3 10)"
    )
    parser.add_argument("--chorales", type=int, help="only the first N held-out chorales (a quick look)")
    parser.add_argument("--seed", type=int, default=0, help="of the sampling and the infilled bars")
    parser.add_argument("--gaps", type=int, default=4, help="infilled gaps drawn per chorale (default 4)")
    parser.add_argument("--train-seed", type=int, default=0, help="of training (a repeat run: another seed)")
    parser.add_argument("--folk", type=int, default=4, help="folk tunes of each metre harmonised (default 4; 0: none)")
    args = parser.parse_args()
    chorales = held_out_chorales(args.chorales)
    reference = features_of(chorales)
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(args.runs or tmp)
        rows = {
            label: trained(label, args.data, args.minutes, args.steps, args.train_seed, runs)
            for label in ["plain", *args.models]
        }
        steps = {
            label: max(json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines())
            for label, run in rows.items()
        }
        free = {label: likelihood(run, dataset_of(run))["bits_per_note"] for label, run in rows.items()}
        bach = faults(chorales)
        print(f"## Co-creation in the time-ordered stream: {len(chorales)} held-out four-part chorales")
        print(
            f"{machine()}; each model trained {f'{args.steps} steps' if args.steps else f'{args.minutes:g} minutes'}: "
            + ", ".join(f"{k} {v} steps" for k, v in steps.items())
        )
        print("\n### Harmonisation (soprano given, alto, tenor and bass written)")
        print("| model | sweeps | s/sweep/chorale | A/T/B bits/note given S | without S | reduction "
              "| faults/100 notes (Bach) | "
              + " | ".join(name.replace("_", " ") for name in FAULTS)
              + " | feature overlap | lively takes |")  # fmt: skip
        print("|---|---|---|---|---|---|---|" + "---|" * len(FAULTS) + "---|---|")
        infill_rows = []
        for label in args.models:
            loaded = Trained.load(rows[label])
            session = Session(loaded, loaded.settings({"temperature": args.temperature, "seed": args.seed}))
            with_s, without = harmonisation_bits(session, chorales)
            infill_rows.append((label, *infill_bits(session, chorales, args.seed, args.gaps)))
            first = None
            for sweeps in args.sweeps:
                written, seconds = harmonised(rows[label], chorales, sweeps, args, Path(tmp) / f"{label}-{sweeps}")
                first = seconds if first is None else first
                per_sweep = f"{(seconds - first) / sweeps / len(chorales) / args.samples:.1f}" if sweeps else "-"
                found = faults(written)
                kinds = " | ".join(f"{found[name]:.2f} ({bach[name]:.2f})" for name in FAULTS)
                print(
                    f"| {label} | {sweeps} | {per_sweep} | {with_s:.3f} | {without:.3f} "
                    f"| {100 * (1 - with_s / without):.1f}% "
                    f"| {found['total']:.2f} ({bach['total']:.2f}) | {kinds} | {overlap(written, reference):.3f} "
                    f"| {lively(written)} of {len(written)} |"
                )
        print("targets: reduction >= 25%; faults <= 3x Bach's; feature overlap >= 0.75; every take lively")
        if args.folk:
            melodies = folk_melodies(Path(tmp) / "folk", args.folk, args.seed)
            runs_folk = {label: rows[label] for label in args.models}
            folk_table(runs_folk, melodies, Path(tmp) / "folk-takes", temperature=args.temperature, seed=args.seed)
            print("target: faults <= 3x Bach's on the chorales (2.9) in every metre")
        print("\n### Infilling (two true bars of one voice)")
        print("| model | gaps | bits/note, both sides | left side only | both sides cost less by |")
        print("|---|---|---|---|---|")
        for label, both, left, spans in infill_rows:
            print(f"| {label} | {spans} | {both:.3f} | {left:.3f} | {100 * (1 - both / left):.1f}% |")
        print("target: both sides at least 10% fewer bits than the left side alone")
        print("\n### Free generation: bits/note of the held-out chorales (plain windows)")
        print("| model | bits/note | against plain |\n|---|---|---|")
        for label, rate in free.items():
            print(f"| {label} | {rate:.3f} | {100 * (rate / free['plain'] - 1):+.1f}% |")
        print("target: within 3% of the plain model (the controls model's vocabulary, hence its tokens, differ)")
        print("\n### Free pieces: bars of 12 written from nothing at the run's settings")
        print("| model | 12 bars or more | lengths |\n|---|---|---|")
        for label, run in rows.items():
            found = lengths(run, Path(tmp) / f"{label}-free")
            print(f"| {label} | {sum(n >= 12 for n in found)} of {len(found)} | {' '.join(map(str, found))} |")
        print("target: at least 11 of 12 pieces 12 bars or more")
        if "controls" in rows:
            loaded = Trained.load(rows["controls"])
            settings = loaded.settings({"temperature": args.temperature, "seed": args.seed, "num": 1})
            controls_table(Session(loaded, settings), chorales, args.seed)


if __name__ == "__main__":
    main()
