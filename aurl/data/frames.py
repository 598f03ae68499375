"""Onset frames: every voice still sounding at an onset restated there as `Program_p Hold`.

In REMI a voice's note is written where it starts and not again, so at an onset the notes sounding with the
ones that start there are somewhere back in the stream, at distances that change from onset to onset. With
`tokenizer.holds` each onset lists, beside the notes that start on it, a `Program_p Hold_None` pair for every
other program whose note goes on through it (drums excepted): what sounds together is written together, as
the voice grids of BachBot and TonicNet write it, in REMI's own tokens otherwise. The pairs carry nothing
the durations do not, so they are derived, never stored: `restate` writes them into a tokenized piece (any
already there are first dropped, so it may run twice), `unstate` takes them out before MidiTok decodes. A
pair goes into its onset before the first note of a later program, as MidiTok orders notes by program.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import miditok

from aurl.data.layout import HOLD, Bar, IsGiven, Layout, Note, Onset

DRUMS = -1


class Frames:
    """A tokenizer's stream with and without its hold pairs; only for a vocabulary that has `Hold_None`."""

    def __init__(self, tokenizer: miditok.MusicTokenizer):
        self.layout = Layout(tokenizer, 0)
        self.hold = tokenizer.vocab[HOLD]
        self.per_beat = tokenizer.config.max_num_pos_per_beat
        # a Duration's length and a TimeSig's meter, in beats of the bar's denominator, as MidiTok counts them
        self.beats: dict[int, Fraction] = {}
        self.meter: dict[int, tuple[int, int]] = {}
        for token, i in tokenizer.vocab.items():
            kind, _, value = token.partition("_")
            if kind == "Duration":
                whole, part, res = (int(v) for v in value.split("."))
                self.beats[i] = whole + Fraction(part, res)
            elif kind == "TimeSig":
                num, den = value.split("/")
                self.meter[i] = (int(num), int(den))

    def unstate(self, ids: list[int]) -> list[int]:
        """The ids without their hold pairs (a Program followed by Hold)."""
        hold = self.hold
        return [t for i, t in enumerate(ids) if t != hold and not (i + 1 < len(ids) and ids[i + 1] == hold)]

    def restate(self, ids: list[int]) -> list[int]:
        """The ids with a hold pair at each onset for every program sounding through it."""
        ids = self.unstate([int(t) for t in ids])
        first = next((i for i, t in enumerate(ids) if self.layout.kind[t] == 1), len(ids))
        bars = self.layout.bars(ids[first:])
        self.frame(bars)
        return [*ids[:first], *(t for bar in bars for t in Layout.plain(bar))]

    def frame(self, bars: list[Bar]) -> None:
        """Put the hold pairs into parsed bars, in place."""
        ends: dict[int, Fraction] = {}  # program → when its latest note ends, in whole notes
        for _, onset, at, den in self.onsets(bars):
            onset.notes = [n for n in onset.notes if not n.hold]
            starting = {note.program for note in onset.notes}
            if not starting:  # a tempo's own onset: no note starts there, none is restated
                continue
            holds = [
                Note(p, [self.layout.program_id[p], self.hold], hold=True)
                for p, end in sorted(ends.items())
                if end > at and p not in starting
            ]
            for note in onset.notes:
                if note.program != DRUMS:
                    ends[note.program] = max(ends.get(note.program, at), at + self.length(note, den))
            for hold in holds:  # before the first note of a later program: MidiTok's own order stays
                notes = onset.notes
                place = next((i for i, n in enumerate(notes) if n.program > hold.program), len(notes))
                notes.insert(place, hold)

    def given_holds(self, bars: list[Bar], span: range, given: IsGiven) -> list[dict[int, list[int]]]:
        """For each bar of `span`, the hold pairs of the given programs sounding through each of its Positions
        (by Position value; where none sound, none): what a request forces after an onset the model opens."""
        notes = [  # (program, start, end) of the given notes, in whole notes
            (note.program, at, at + self.length(note, den))
            for b, onset, at, den in self.onsets(bars)
            for note in onset.notes
            if not note.hold and note.program != DRUMS and given(b, note.program)
        ]
        timeline = self.timeline(bars)
        out = []
        for b in span:
            _, start, (num, den) = timeline[b]
            table: dict[int, list[int]] = {}
            for position in range(num * self.per_beat):
                at = start + Fraction(position, self.per_beat * den)
                sounding = sorted({p for p, lo, hi in notes if lo < at < hi})
                if sounding:
                    table[position] = [t for p in sounding for t in (self.layout.program_id[p], self.hold)]
            out.append(table)
        return out

    def length(self, note: Note, den: int) -> Fraction:
        """A note's length in whole notes (0 for a hold pair)."""
        return next((self.beats[t] for t in note.ids if t in self.beats), Fraction(0)) / den

    def onsets(self, bars: list[Bar]) -> Iterator[tuple[int, Onset, Fraction, int]]:
        """Each onset with its bar's index, when it sounds (whole notes) and its bar's meter's denominator."""
        for b, (bar, start, (_, den)) in enumerate(self.timeline(bars)):
            for onset in bar.onsets:
                yield b, onset, start + Fraction(int(self.layout.value[onset.position]), self.per_beat * den), den

    def timeline(self, bars: list[Bar]) -> list[tuple[Bar, Fraction, tuple[int, int]]]:
        """Each bar with where it starts (whole notes) and its meter (4/4 until a TimeSig says otherwise)."""
        out, start, meter = [], Fraction(0), (4, 4)
        for bar in bars:
            meter = next((self.meter[t] for t in bar.head if t in self.meter), meter)
            out.append((bar, start, meter))
            start += Fraction(*meter)
        return out


def frames_of(tokenizer: miditok.MusicTokenizer) -> Frames | None:
    """The tokenizer's frames where its vocabulary has hold pairs (tokenizer.holds), else None."""
    return Frames(tokenizer) if HOLD in tokenizer.vocab else None
