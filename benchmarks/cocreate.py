"""Co-creation measured on the Bach chorales' held-out (valid) split: each chorale is four tracks,
soprano first. One table per part:

- harmonisation: bits per note of Bach's own alto, tenor and bass given the soprano (S A T B) against
  the same voices without it (A T B); voice-leading faults per 100 notes (aurl.evaluation.harmony) of
  harmonisations the model writes for each soprano (--accompany: keep track 0, add three voices) and of
  Bach's own; the mean feature overlap (aurl evaluate's features) of the written harmonisations with
  the held-out chorales;
- infilling: two bars of one voice (drawn per chorale, never the first or last bars) scored as infill
  (the whole chorale around them), as infill with the chorale cut after them (the left side only), and
  alone (the voice's two bars without any context);
- controls: the model harmonises each soprano asked for every bar-level and track-level control of
  Bach's own alto, tenor and bass; MidiTok then measures the voices it wrote: the share that equals the
  request, and the share within one bin (numbers: each value off by at most one bin; sets of pitch
  classes or durations: at most one member different); and the same shares without asking, the
  baseline the controls have to beat;
- the multitrack model beside the REMI demo model: bits per note on the held-out chorales and the mean
  feature overlap of free samples.

Run (see the README for training both models):
  .venv/bin/python benchmarks/cocreate.py --mmm runs/mmm --mmm-data data/bach-mmm \
      --remi runs/demo --remi-data data/bach-chorales [--samples 2]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import symusic
import torch

from aurl.data.multitrack import CONTROLS, Multitrack, Track
from aurl.evaluation.compare import compare_sets
from aurl.evaluation.features import HISTOGRAM_FEATURES, SCALAR_FEATURES, piece_features
from aurl.evaluation.harmony import FAULTS, voice_leading_faults
from aurl.evaluation.likelihood import likelihood
from aurl.evaluation.report import midi_files
from aurl.generation.cocreate import Session, read_song
from aurl.generation.generate import Trained
from aurl.generation.multitrack_grammar import Segment
from aurl.generation.requests import Accompany, generate

FEATURES = SCALAR_FEATURES + HISTOGRAM_FEATURES
PARTS = ["harmonisation", "infilling", "controls", "remi"]


def quiet(_: str) -> None:
    """Progress lines are not part of the tables."""


@torch.inference_mode()
def nll(model: torch.nn.Module, ids: list[int], scored: list[int]) -> float:
    """Summed negative log-likelihood (nats) of the tokens at positions `scored` of `ids`."""
    logits = model(torch.tensor([ids]))[0, :-1].float().log_softmax(-1)
    targets = torch.tensor(ids[1:])
    picked = -logits[torch.arange(len(targets)), targets]
    return float(picked[[p - 1 for p in scored]].sum())


def bits(total: float, notes: int) -> float:
    return total / math.log(2) / max(1, notes)


def features_of(paths: list[Path]) -> list[dict]:
    out = []
    for i, path in enumerate(paths):
        row = piece_features(symusic.Score(str(path)))
        row["id"] = f"{path}#{i}"
        out.append(row)
    return out


def mean_overlap(generated: list[dict], reference: list[dict]) -> float:
    comparison = compare_sets(generated, reference, FEATURES)
    return float(np.nanmean([comparison[name]["overlap"] for name in FEATURES]))


def pooled_faults(paths: list[Path]) -> dict[str, float]:
    rows = [voice_leading_faults(symusic.Score(str(p))) for p in paths]
    notes = sum(r["notes"] for r in rows)
    out = {name: 100 * sum(r[name] for r in rows) / notes for name in FAULTS}
    out["all"] = 100 * sum(r["total"] for r in rows) / notes
    return out


def harmonisation(
    session: Session, songs, chorales: list[Path], samples: int, work: Path, sampling: dict
) -> list[Path]:
    mt, model = session.mt, session.decoder
    given = alone = 0.0
    notes = scored_pieces = 0
    for song in songs:
        lower = [t for track in song.tracks[1:] for t in track.ids(mt.track_end)]
        soprano = song.tracks[0].ids(mt.track_end)
        if 2 + len(soprano) + len(lower) > model.cfg.context:
            continue
        with_s = [mt.bos, *soprano, *lower, mt.eos]
        without = [mt.bos, *lower, mt.eos]
        given += nll(model, with_s, list(range(1 + len(soprano), 1 + len(soprano) + len(lower))))
        alone += nll(model, without, list(range(1, 1 + len(lower))))
        notes += sum(len(t.notes) for t in song.score.tracks[1:])
        scored_pieces += 1
    written = []
    for path, song in zip(chorales, songs, strict=True):
        programs = [t.program for t in song.score.tracks[1:]]
        out = work / "harmonised" / path.stem
        request = Accompany(song=str(path), add=programs, keep=[0])
        made = generate(session.run_dir, out, log=None, request=request, num=samples, **sampling)
        written += [s.midi for s in made]
    faults_written, faults_bach = pooled_faults(written), pooled_faults(chorales)
    overlap = mean_overlap(features_of(written), features_of(chorales))
    with_bits, without_bits = bits(given, notes), bits(alone, notes)
    print(f"\n### Harmonisation ({scored_pieces} held-out chorales scored, {len(written)} harmonisations written)")
    print("| measure | value | target |\n|---|---|---|")
    print(f"| bits/note of Bach's A, T, B given the soprano | {with_bits:.3f} | |")
    print(f"| bits/note of Bach's A, T, B without it | {without_bits:.3f} | |")
    print(f"| reduction | {100 * (1 - with_bits / without_bits):.1f}% | >= 25% |")
    for name in (*FAULTS, "all"):
        label = "all faults" if name == "all" else name.replace("_", " ")
        print(f"| {label} per 100 notes: written / Bach | {faults_written[name]:.2f} / {faults_bach[name]:.2f} | |")
    ratio = faults_written["all"] / max(faults_bach["all"], 1e-9)
    print(f"| written / Bach, all faults | {ratio:.2f}x | <= 2x |")
    print(f"| mean feature overlap with the held-out chorales | {overlap:.3f} | >= 0.75 |")
    return written


def holed(mt: Multitrack, tracks: list[Track], keep_bars: int, voice: int, span: range) -> list[int]:
    """BOS and the tracks cut to their first keep_bars bars, the span of one voice replaced by Infill_Bar."""
    out = [mt.bos]
    for i, track in enumerate(tracks):
        bars = track.bars[:keep_bars]
        if i == voice:
            bars = [*bars[: span.start], *[np.array([mt.infill_bar])] * len(span), *bars[span.stop :]]
        out += Track(track.header, bars).ids(mt.track_end)
    return out


def scored_fills(model: torch.nn.Module, mt: Multitrack, prefix: list[int], fills: list[int]) -> float:
    """NLL of the bars inside the fills written after prefix (the fill markers not counted)."""
    ids = [*prefix, *fills, mt.eos]
    inside = [len(prefix) + i for i, t in enumerate(fills) if t not in (mt.infill_start, mt.infill_end)]
    return nll(model, ids, inside)


def infilling(session: Session, songs, rng: np.random.Generator) -> None:
    mt, model = session.mt, session.decoder
    totals = {"both sides": 0.0, "left side only": 0.0, "no context": 0.0}
    notes = spans = 0
    for song in songs:
        if song.bars < 4:
            continue
        voice = int(rng.integers(len(song.tracks)))
        first = int(rng.integers(1, song.bars - 2))  # bars first, first + 1; one bar at least on each side
        span = range(first, first + 2)
        true_bars = [song.tracks[voice].bars[b] for b in span if b < len(song.tracks[voice].bars)]
        if len(true_bars) < 2:
            continue
        fills = [t for bar in true_bars for t in (mt.infill_start, *bar.tolist(), mt.infill_end)]

        both = holed(mt, song.tracks, song.bars, voice, span)
        left = holed(mt, song.tracks, span.stop, voice, span)
        if len(both) + len(fills) + 1 > model.cfg.context:
            continue
        totals["both sides"] += scored_fills(model, mt, both, fills)
        totals["left side only"] += scored_fills(model, mt, left, fills)
        lone = [mt.bos, *song.tracks[voice].header.tolist(), *(t for bar in true_bars for t in bar.tolist())]
        totals["no context"] += nll(
            model, [*lone, mt.track_end, mt.eos], list(range(len(lone) - len(fills) + 4, len(lone)))
        )
        notes += sum(int(mt.tokenizer[int(t)].startswith("Pitch")) for bar in true_bars for t in bar)
        spans += 1
    print(f"\n### Infilling (two bars of one voice, {spans} held-out chorales)")
    print("| context | bits/note of the true bars |\n|---|---|")
    for name, total in totals.items():
        print(f"| {name} | {bits(total, notes):.3f} |")
    verdict = "met" if totals["both sides"] < totals["left side only"] else "MISSED"
    print(f"target: both sides below the left side alone: {verdict}")


def _bin_distance(name: str, requested: list[str], measured: list[str]) -> float:
    """How far a measured control is from the request: bins for numbers, members for sets."""
    if name.endswith(("pitch_class", "duration")):
        return len(set(requested) ^ set(measured)) / (1 if name.endswith("pitch_class") else 2)
    if len(requested) != len(measured):
        return math.inf

    def value(token: str) -> float:
        text = token.split("_")[1].rstrip("+")
        return float(text)

    if name == "track_repetition":
        step = 1 / 9  # MidiTok's 10 bins over [0, 1]
        return max(abs(value(a) - value(b)) / step for a, b in zip(requested, measured, strict=True))
    return max(abs(value(a) - value(b)) for a, b in zip(requested, measured, strict=True))


def controls(session: Session, songs) -> None:
    """Harmonise each soprano asking for Bach's own alto, tenor and bass controls, bar by bar and track by
    track; then without asking (how often the model lands there unprompted)."""
    mt, tokenizer = session.mt, session.tokenizer
    names = [n for n in CONTROLS if n in mt.controls]
    hits = {asked: {n: [0, 0, 0] for n in names} for asked in (True, False)}  # exact, within one bin, requests
    for song in songs:
        for asked in (True, False):
            plan, wanted = [], []
            for voice in range(1, len(song.tracks)):
                whole, per_bar = mt.measure(song.tracks[voice], names)
                header = [t for n in names if n.startswith("track_") for t in whole.get(n, [])] if asked else []
                bar_plan = {
                    b: [
                        *(t for n in names if asked and n.startswith("bar_") for t in per_bar.get(n, {}).get(b, [])),
                        *meter,
                    ]
                    for b, meter in enumerate(song.meters)
                }
                program = mt.program[song.score.tracks[voice].program]
                plan.append(Segment([mt.track_start, program, *header], song.bars, mt.track_end, bar_plan))
                wanted.append((whole, per_bar))
            budget = session.settings.max_tokens * len(plan)  # max_tokens per segment
            (row,) = session.write([[mt.bos, *song.tracks[0].ids(mt.track_end)]], plan, budget)
            for track, (whole, per_bar) in zip(mt.tracks(np.asarray(row)), wanted, strict=True):
                got_whole, got_bar = mt.measure(track, names)
                pairs = [(n, whole[n], got_whole.get(n, [])) for n in whole]
                pairs += [(n, v, got_bar.get(n, {}).get(b, [])) for n, bars in per_bar.items() for b, v in bars.items()]
                for name, requested, measured in pairs:
                    distance = _bin_distance(name, [tokenizer[t] for t in requested], [tokenizer[t] for t in measured])
                    row_hits = hits[asked][name]
                    row_hits[0] += distance == 0
                    row_hits[1] += distance <= 1
                    row_hits[2] += 1
    print_controls(hits, names, len(songs))


def print_controls(hits: dict[bool, dict[str, list[int]]], names: list[str], songs: int) -> None:
    """The controls table: per control, requests met exactly and within one bin, asked and unasked."""
    print(f"\n### Controls ({songs} held-out sopranos harmonised, asked for Bach's own voices' controls)")
    print("| control | requests | equal to the request | within one bin | unasked: equal | unasked: within one |")
    print("|---|---|---|---|---|---|")
    sums = {asked: [0, 0, 0] for asked in (True, False)}
    for name in names:
        (e, w, c), (ue, uw, uc) = hits[True][name], hits[False][name]
        print(
            f"| {name} | {c} | {100 * e / max(1, c):.1f}% | {100 * w / max(1, c):.1f}% "
            f"| {100 * ue / max(1, uc):.1f}% | {100 * uw / max(1, uc):.1f}% |"
        )
        for asked in (True, False):
            sums[asked] = [x + y for x, y in zip(sums[asked], hits[asked][name], strict=True)]
    (e, w, c), (ue, uw, uc) = sums[True], sums[False]
    print(f"| all | {c} | {100 * e / c:.1f}% | {100 * w / c:.1f}% | {100 * ue / uc:.1f}% | {100 * uw / uc:.1f}% |")
    print("targets: equal in >= 70% of requests, within one bin in >= 90%")


def beside_remi(args, chorales: list[Path], work: Path) -> None:
    print("\n### The multitrack model beside the REMI demo model (held-out chorales)")
    print("| model | bits/note | free samples | skipped tokens | mean feature overlap |\n|---|---|---|---|---|")
    reference = features_of(chorales)
    for label, run, data in (("MMM", args.mmm, args.mmm_data), ("REMI demo", args.remi, args.remi_data)):
        rate = likelihood(run, data)["bits_per_note"]
        free = generate(run, work / f"free-{label}", num=args.free, batch_size=args.free, log=quiet)
        overlap = mean_overlap(features_of([s.midi for s in free]), reference)
        skipped = sum(s.skipped_tokens for s in free)
        print(f"| {label} ({run}) | {rate:.3f} | {len(free)} | {skipped} | {overlap:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mmm", required=True, help="multitrack run (configs/mmm.yaml)")
    parser.add_argument("--mmm-data", required=True, help="its prepared chorales")
    parser.add_argument("--remi", required=True, help="REMI demo run (configs/demo.yaml)")
    parser.add_argument("--remi-data", required=True, help="its prepared chorales")
    parser.add_argument("--samples", type=int, default=2, help="harmonisations written per chorale")
    parser.add_argument("--free", type=int, default=8, help="free samples of each model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, help="sampling temperature (default: the run's)")
    parser.add_argument("--top-p", type=float, help="nucleus (default: the run's)")
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS, help="tables to print (default: all)")
    args = parser.parse_args()
    sampling = {"seed": args.seed, "temperature": args.temperature, "top_p": args.top_p}
    chorales = midi_files("builtin:bach-chorales:valid", quiet)
    mmm = Trained.load(args.mmm)
    session = Session(mmm, mmm.settings(sampling))
    songs = [read_song(path, session.tokenizer, session.mt) for path in chorales]
    four = [(p, s) for p, s in zip(chorales, songs, strict=True) if len(s.tracks) == 4]
    chorales, songs = [p for p, _ in four], [s for _, s in four]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "harmonisation" in args.parts:
            harmonisation(session, songs, chorales, args.samples, work, sampling)
        if "infilling" in args.parts:
            infilling(session, songs, np.random.default_rng(args.seed))
        if "controls" in args.parts:
            controls(session, songs)
        if "remi" in args.parts:
            beside_remi(args, chorales, work)


if __name__ == "__main__":
    main()
