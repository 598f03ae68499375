"""Takes: what a generation request returns, and the one writer that puts them on disk for the CLI, the studio
and the training samples alike (MIDI, piano roll, optionally WAV), saying what each holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import symusic

from aurl.files import write_together, writing
from aurl.render import Span, piano_roll, render_wav


@dataclass
class Take:
    """One written piece: its music, the tokens that wrote it (BOS dropped) and how many of them did not
    decode, where it holds given material (a primer, kept tracks, what surrounds an infill gap), and the
    versions it was before each revision sweep, where they were kept (aurl.generation.sweeps)."""

    score: symusic.Score
    tokens: list[int]
    skipped: int
    given: list[Span] = field(default_factory=list)
    versions: list[Take] = field(default_factory=list)


@dataclass
class Sample:
    """A take as written to disk."""

    midi: Path
    png: Path | None  # None: not drawn (the studio draws it when asked)
    tokens: int
    notes: int
    pitches: int
    skipped_tokens: int  # tokens MidiTok could not place in the music (wrong type at that point)
    longest_repeat: int  # longest run of one token id repeated back to back
    wav: Path | None = None
    given: list[Span] = field(default_factory=list)
    versions: list[Sample] = field(default_factory=list)  # the take before each revision sweep, where kept


def longest_run(ids: list[int]) -> int:
    best = run = 0
    for i, token in enumerate(ids):
        run = run + 1 if i and token == ids[i - 1] else 1
        best = max(best, run)
    return best


def write_takes(
    takes: list[Take],
    folder: Path,
    title: str,
    log: Callable[[str], None] | None = print,
    png: bool = True,
    wav: bool = False,
    soundfont: str | Path | None = None,
) -> list[Sample]:
    """Write each take as folder/sample_<i>.mid (and .png, and with `wav` .wav through `soundfont`), the versions
    it was before each revision sweep as sample_<i>_sweep_<k>.mid (and .png; k = 0: the first pass); a failed
    write is a WriteError and leaves no part of a file."""
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i, take in enumerate(takes):
        sample = write_take(take, folder / f"sample_{i}", title, log, png)
        sample.versions = [
            write_take(version, folder / f"sample_{i}_sweep_{k}", title, log, png)
            for k, version in enumerate(take.versions)
        ]
        samples.append(sample)
    if wav:
        for sample in samples:
            sample.wav = render_wav(sample.midi, sample.midi.with_suffix(".wav"), soundfont)
    return samples


def write_take(take: Take, stem: Path, title: str, log: Callable[[str], None] | None, png: bool = True) -> Sample:
    score, row = take.score, take.tokens
    midi = stem.with_suffix(".mid")
    drawn = stem.with_suffix(".png") if png else None
    # dumps_midi and a Python write: symusic's dump_midi says nothing when the disk is full
    write_together({midi: lambda tmp: tmp.write_bytes(score.dumps_midi())})
    if drawn is not None:
        write_together({drawn: lambda tmp: piano_roll(score, tmp, f"{title} {stem.name}", take.given)})
    pitches = {int(p) for t in score.tracks for p in t.notes.numpy()["pitch"]}
    notes = sum(len(t.notes) for t in score.tracks)
    repeat = longest_run(row)
    if log is not None:
        log(
            f"{midi}  {len(row)} tokens, {notes} notes, {len(pitches)} distinct pitches, "
            f"{take.skipped} skipped tokens, longest repeat {repeat}"
        )
    return Sample(midi, drawn, len(row), notes, len(pitches), take.skipped, repeat, given=take.given)
