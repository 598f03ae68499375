"""Do the built-in corpora's MIDI files keep the score's bar lines?

For each piece of each corpus: each note's beat in its bar of the MIDI file (from the file's own time
signatures: ticks since the last bar line / ticks per beat + 1) against music21's `beat` for it in the score
as the converter reads it (repeats played out as music21's MIDI writer plays them, split bars marked as its
MusicXML reader marks them), notes matched per part in order of onset and pitch. Prints, per corpus, how
many pieces open with a pickup, how many have every note on music21's beat, how many the converter wrote as
music21 writes them because it could not give them the score's bar lines (unaligned), and how many it could
not convert.

The whole corpus is converted once into AURL_CACHE (or read from there); with --sample N, only N pieces
spread over it are converted, into a temporary folder, and checked.

Run: .venv/bin/python benchmarks/bars.py [--corpus bach-chorales --corpus essen ...] [--sample N] [--workers 2]
"""

from __future__ import annotations

import argparse
import bisect
import difflib
import json
import math
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import symusic
from miditok.utils import get_bars_ticks
from music21 import harmony, meter

from aurl.data.builtin import CORPORA, Piece
from aurl.data.scores import CHORDS, _pickup, parse_score

Beats = list[list[tuple[float, int, float]]]  # per part (track) with notes: (onset, pitch, beat), in order


def score_beats(score) -> Beats:
    """music21's beat of each note its MIDI writer may write: tied notes merged as it merges them, each pitch
    of a chord, grace notes (written from ABC, not from MusicXML), no chord symbols (the converter takes them
    out)."""
    parts = []
    for part in score.parts:
        merged = part.stripTies(matchByPitch=True)
        notes = [
            (float(element.getOffsetInHierarchy(merged)), pitch.midi, float(element.beat))
            for element in merged.recurse().notes.getElementsNotOfClass(harmony.Harmony)
            for pitch in element.pitches
        ]
        if notes:
            parts.append(sorted(notes))
    return parts


def midi_beats(path: Path) -> Beats:
    """The beat of each note of the MIDI file in its bar, from the file's time signatures; chords left out."""
    midi = symusic.Score(str(path))
    bars = get_bars_ticks(midi)
    tpq = midi.ticks_per_quarter
    signatures = sorted(midi.time_signatures, key=lambda sig: sig.time)
    starts = [sig.time for sig in signatures]
    beats = [meter.TimeSignature(f"{s.numerator}/{s.denominator}").beatDuration.quarterLength for s in signatures]
    tracks = []
    for track in midi.tracks:
        if track.name != CHORDS:
            notes = []
            for note in track.notes:
                beat = beats[bisect.bisect_right(starts, note.time) - 1] * tpq
                bar = bars[bisect.bisect_right(bars, note.time) - 1]
                notes.append((note.time / tpq, note.pitch, (note.time - bar) / beat + 1))
            tracks.append(sorted(notes))
    return tracks


Pair = tuple[tuple[float, int, float], tuple[float, int, float]]  # a note of the score, its note in the file


def paired(expected: Beats, written: Beats) -> tuple[list[Pair], int]:
    """The notes of the score and of the MIDI file paired per part by pitch, in order of onset and pitch
    (difflib's longest matching runs), and how many of either were left without a partner: music21 writes
    some grace notes and not others."""
    pairs = []
    for part, track in zip(expected, written, strict=False):
        matcher = difflib.SequenceMatcher(None, [n[1] for n in part], [n[1] for n in track], autojunk=False)
        for a, b, size in matcher.get_matching_blocks():
            pairs += zip(part[a : a + size], track[b : b + size], strict=True)
    return pairs, sum(map(len, expected)) + sum(map(len, written)) - 2 * len(pairs)


@dataclass(frozen=True)
class Verdict:
    piece: str
    pickup: bool  # it opens with one
    paired: int  # notes of the MIDI file paired with one of the score
    off: int  # of them, those whose beat in the file is not music21's
    unmatched: int  # notes of the score or the file left without a partner


def check(job: tuple[Piece, str]) -> Verdict:
    """Each note of the piece's MIDI file against its partner in the score."""
    piece, path = job
    score = parse_score(piece.source, piece.number)
    pairs, unmatched = paired(score_beats(score), midi_beats(Path(path)))
    off = sum(not math.isclose(want[2], got[2], abs_tol=1e-6) for want, got in pairs)
    return Verdict(piece.name, bool(_pickup(score)), len(pairs), off, unmatched)


def converted(name: str, pieces: list[Piece], workers: int, out: Path | None) -> tuple[Path, dict]:
    """The corpus's folder and what its complete.json says: the whole corpus in the cache, or the pieces
    converted into out."""
    if out is None:
        root = CORPORA[name].folder(workers)
        return root, json.loads((root / "complete.json").read_text())
    conversion = CORPORA[name].convert(out, workers, pieces=pieces)
    return out, {"failed": conversion.failed, "unaligned": conversion.unaligned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", action="append", choices=[n for n in CORPORA if n != "music21"],
                        help="a built-in corpus (repeatable; default bach-chorales)")  # fmt: skip
    parser.add_argument("--sample", type=int, help="check only this many pieces of each, spread over it")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--list", action="store_true", help="also name each piece off music21's beats")
    args = parser.parse_args()
    rows, listed = [], []
    for name in args.corpus or ["bach-chorales"]:
        start = time.perf_counter()
        pieces = CORPORA[name].pieces()
        if args.sample:
            pieces = pieces[:: max(1, len(pieces) // args.sample)][: args.sample]
        with tempfile.TemporaryDirectory(prefix="bars-") as scratch, ProcessPoolExecutor(args.workers) as pool:
            root, done = converted(name, pieces, args.workers, Path(scratch) if args.sample else None)
            jobs = [(p, str(root / p.name)) for p in pieces if p.name not in done["failed"]]
            verdicts = list(pool.map(check, jobs, chunksize=4))
        rows.append((
            name, len(pieces), sum(v.pickup for v in verdicts), sum(v.paired and not v.off for v in verdicts),
            len(set(done["unaligned"]) & {p.name for p in pieces}), len(pieces) - len(jobs),
            sum(v.unmatched for v in verdicts), time.perf_counter() - start,
        ))  # fmt: skip
        listed += [f"{name}/{v.piece}: {v.off} of {v.paired} notes off their beat" for v in verdicts if v.off]
    header = (
        "corpus", "pieces", "pickup", "every note on music21's beat", "unaligned (as today)", "failed",
        "notes unmatched", "seconds",
    )  # fmt: skip
    cells = [[f"{cell:.0f}" if isinstance(cell, float) else str(cell) for cell in row] for row in rows]
    widths = [max(len(text) for text in column) for column in zip(header, *cells, strict=True)]
    for line in (header, ["-" * width for width in widths], *cells):
        print("| " + " | ".join(text.rjust(width) for text, width in zip(line, widths, strict=True)) + " |")
    if args.list:
        print("\n".join(listed))


if __name__ == "__main__":
    main()
