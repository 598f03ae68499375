"""The time-ordered stream laid out for co-creation: its task, what is given, what is written, what is read
from after a gap, and what is anticipated.

In REMI with programs every track is one stream, notes ordered by onset: `Bar TimeSig Position Tempo Program
Pitch Duration Program Pitch Duration Position ...`. A co-creation request, and a training window of the
accompany or infill task, splits a piece's notes into given ones (the model reads them, never predicts them:
generation forces them) and written ones. The layout
- says the task right after BOS: `Task_Free` (a free piece or a primer's continuation), `Task_Accompany` or
  `Task_Infill`, given like any forced token, so that a free piece never reads as a request that ends after its
  last bar (a run whose vocabulary has no task tokens, from before they existed, reads and writes none);
- reads both sides of an infill gap (fill-in-the-middle: prefix, suffix, middle, Bavarian et al. 2022): the
  bars before the gap, then a block `Suffix_Start ... Suffix_End` holding the bars after it (every track, up
  to data.suffix_bars, as MidiTok writes them: given, never played; empty where the gap ends
  the piece), then the gap's bars, its other tracks given at their onsets and its own written;
- puts the given notes first at each onset, so that a voice is written knowing what the given voices do at
  that moment (MidiTok orders an onset's notes by track instead);
- anticipates: right after each bar's time signature, a block `Ahead_Start ... Ahead_End` holds the given
  notes of the bar `ahead` bars later (each onset's Position, tempo and notes), so the model knows where the
  melody goes, and what follows a gap, before it writes under them: the Anticipatory Music Transformer's
  idea in REMI's terms. A block is read, never played: decoding drops it;
- steers, where the tokenizer has attribute controls (tokenizer.controls, aurl.data.controls): after the
  block, for each program written in the bar (in program order, drums first), `Program_p` then p's
  controls, MidiTok's tokens: its track-level ones in the first bar it is written in (they describe every
  note it writes, from that bar to its last written one), then its bar-level ones of this bar (in the order
  of aurl.data.controls.CONTROLS within each level). A program with no controls there has no group, so a
  request that asks for none reads as a window that drew none. A group is given, never played: decoding
  drops it. So a bar reads
  `Bar TimeSig Ahead_Start ... Ahead_End Program_p ACTrack... ACBar... Program_q ACBar... Position ...`.
- ends what it writes as the music does: where the song goes on after the written bars, with the next bar's
  `Bar` (a target: the model writes bar lines as it always does, never having to know that a gap ends there)
  and then EOS, given; where the song ends with them, with EOS, a target (a run from before task tokens: EOS).
So an infill reads `BOS Task_Infill <bars before> Suffix_Start <bars after> Suffix_End <the gap's bars> Bar EOS`.
Training windows and generation requests are laid out here alone, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import miditok
import numpy as np

from aurl.config import DataConfig
from aurl.data.controls import is_control

AHEAD_TOKENS = ("Ahead_Start", "Ahead_End")
SUFFIX_TOKENS = ("Suffix_Start", "Suffix_End")
TASK_TOKENS = {"free": "Task_Free", "accompany": "Task_Accompany", "infill": "Task_Infill"}
LAYOUT_TOKENS = [*AHEAD_TOKENS, *SUFFIX_TOKENS, *TASK_TOKENS.values()]  # special tokens of time-ordered runs
HOLD = "Hold_None"  # a voice sounding on through an onset, restated there (tokenizer.holds, aurl.data.frames)
IsGiven = Callable[[int, int], bool]  # (bar index, program: -1 drums) → whether that bar's notes are given
# (bar index, or None for the track as a whole; program: -1 drums) → the control ids a written program is
# steered by there ([]: none)
Controls = Callable[[int | None, int], list[int]]


def time_ordered(tokenizer: miditok.MusicTokenizer) -> bool:
    """Whether a tokenizer writes every track in one stream ordered by onset: REMI with programs."""
    return isinstance(tokenizer, miditok.REMI) and tokenizer.one_token_stream


@dataclass
class Note:
    program: int
    ids: list[int]  # Program Pitch (Velocity) Duration, or Program Hold
    hold: bool = False  # a note going on through the onset, not one starting on it (aurl.data.frames)


@dataclass
class Onset:
    position: int  # its Position id
    head: list[int]  # what comes before its notes (a Tempo): given wherever anything is
    notes: list[Note] = field(default_factory=list)


@dataclass
class Bar:
    head: list[int]  # Bar and its TimeSig
    onsets: list[Onset] = field(default_factory=list)

    def without(self, programs: set[int]) -> Bar:
        """The bar with these programs' notes taken out, and the onsets where no note starts then (their hold pairs
        with them; a tempo's onset stays)."""
        out = []
        for o in self.onsets:
            notes = [n for n in o.notes if n.program not in programs]
            if not any(not n.hold for n in notes):
                notes = []
            if o.head or notes:
                out.append(Onset(o.position, o.head, notes))
        return Bar(self.head, out)


@dataclass
class Laid:
    """A laid-out stream: its ids and, per id, whether it is given (generation forces it; training targets it
    unless data.given_targets is false, aurl.data.timed_tasks)."""

    ids: list[int] = field(default_factory=list)
    given: list[bool] = field(default_factory=list)

    def add(self, ids: list[int], given: bool) -> None:
        self.ids += ids
        self.given += [given] * len(ids)

    def extend(self, other: Laid) -> None:
        self.ids += other.ids
        self.given += other.given


def run_layout(tokenizer: miditok.MusicTokenizer, cfg: DataConfig) -> Layout:
    """The layout a run trains and co-creates with: anticipation only where it trained for it, the bars after a
    gap read only by a run whose vocabulary has the block."""
    vocab = tokenizer.vocab
    ahead = cfg.ahead_bars if cfg.cocreation and AHEAD_TOKENS[0] in vocab else 0
    return Layout(tokenizer, ahead, cfg.suffix_bars if SUFFIX_TOKENS[0] in vocab else 0)


def task_ids(tokenizer: miditok.MusicTokenizer, task: str) -> list[int]:
    """What follows BOS in a window or request of `task` (free, accompany, infill): its task token, or nothing
    where the vocabulary has none (a run from before task tokens, or a tokenizer that does not co-create)."""
    name = TASK_TOKENS[task]
    return [tokenizer.vocab[name]] if name in tokenizer.vocab else []


class Layout:
    """A tokenizer's ids as the layout reads and writes them; `ahead` bars of anticipation (0: none) and up to
    `suffix` bars after an infill gap read before it (0: none)."""

    def __init__(self, tokenizer: miditok.MusicTokenizer, ahead: int, suffix: int = 0):
        vocab = tokenizer.vocab
        self.tokenizer, self.ahead, self.suffix = tokenizer, ahead, suffix
        self.bar, self.eos = vocab["Bar_None"], vocab["EOS_None"]
        self.start, self.end = (vocab.get(name, -1) for name in AHEAD_TOKENS)
        self.suffix_start, self.suffix_end = (vocab.get(name, -1) for name in SUFFIX_TOKENS)
        self.tasks = {vocab[name] for name in TASK_TOKENS.values() if name in vocab}
        self.hold = vocab.get(HOLD, -1)
        self.kind = np.zeros(len(vocab), dtype=np.int8)  # 1 Bar, 2 Position, 3 Program
        self.value = np.full(len(vocab), -2, dtype=np.int64)  # of Position and Program ids (-1: drums)
        for token, i in vocab.items():
            kind, _, value = token.partition("_")
            self.kind[i] = {"Bar": 1, "Position": 2, "Program": 3}.get(kind, 0)
            if self.kind[i] > 1:
                self.value[i] = int(value)
        self.program_id = {int(self.value[i]): i for i in np.flatnonzero(self.kind == 3).tolist()}
        self.is_control = is_control(tokenizer)

    def bars(self, ids: np.ndarray | list[int]) -> list[Bar]:
        """A stream of base ids (no BOS, no blocks) read as bars of onsets; what precedes the first Bar is
        dropped."""
        out: list[Bar] = []
        for t in (int(i) for i in ids):
            kind = self.kind[t]
            if kind == 1:
                out.append(Bar([t]))
            elif not out:
                continue
            elif kind == 2:
                out[-1].onsets.append(Onset(t, []))
            elif not out[-1].onsets:
                out[-1].head.append(t)  # TimeSig
            elif kind == 3:
                out[-1].onsets[-1].notes.append(Note(int(self.value[t]), [t]))
            elif out[-1].onsets[-1].notes:
                out[-1].onsets[-1].notes[-1].ids.append(t)
                out[-1].onsets[-1].notes[-1].hold |= t == self.hold
            else:
                out[-1].onsets[-1].head.append(t)
        return out

    @staticmethod
    def held(onset: Onset, given: Callable[[int], bool]) -> list[int]:
        """What of an onset is given (`given(program)`): its head and those notes."""
        return [*onset.head, *(t for note in onset.notes if given(note.program) for t in note.ids)]

    def block(self, bar: Bar | None, given: Callable[[int], bool]) -> list[int]:
        """The anticipated block of a bar's given notes (`given(program)`); empty blocks are written too, so
        that every bar of a request reads alike."""
        if self.ahead == 0:
            return []
        inside = []
        for onset in bar.onsets if bar is not None else []:
            held = self.held(onset, given)
            if held:
                inside += [onset.position, *held]
        return [self.start, *inside, self.end]

    def anticipated(self, bars: list[Bar], b: int, given: IsGiven) -> list[int]:
        """The block written in bar b: bar b + ahead's given notes."""
        later = b + self.ahead
        return self.block(bars[later] if later < len(bars) else None, lambda program: given(later, program))

    def steering(self, b: int, written: list[int], starting: Collection[int], controls: Controls) -> list[int]:
        """Bar b's control groups: for each program of `written` (those written in it), Program_p, then p's
        track-level controls where it is in `starting` (its first written bar), then its controls of bar b."""
        out = []
        for program in sorted(written):
            ids = [*(controls(None, program) if program in starting else []), *controls(b, program)]
            if ids:
                out += [self.program_id[program], *ids]
        return out

    def lay_out(self, bars: list[Bar], span: range, given: IsGiven | None, controls: Controls | None = None) -> Laid:
        """The bars of `span` laid out, anticipating from `bars` (which may run on past them) and steering the
        programs written in them by `controls` (track-level controls where a program is first written in the
        span); without `given` (a free piece) as MidiTok writes them, nothing given, anticipated or steered."""
        laid = Laid()
        programs = sorted({note.program for b in span for onset in bars[b].onsets for note in onset.notes})
        started: set[int] = set()
        for b in span:
            bar = bars[b]
            if given is None:
                laid.add(self.plain(bar), False)
                continue
            laid.add(bar.head[:1], False)
            laid.add(bar.head[1:], True)  # the meter: forced
            laid.add(self.anticipated(bars, b, given), True)
            if controls is not None:
                written = [p for p in programs if not given(b, p)]
                laid.add(self.steering(b, written, set(written) - started, controls), True)
                started.update(written)
            for onset in bar.onsets:
                laid.add([onset.position], False)
                laid.add(self.held(onset, lambda program, b=b: given(b, program)), True)
                laid.add([t for note in onset.notes if not given(b, note.program) for t in note.ids], False)
        return laid

    def after(self, bars: list[Bar], gap: range) -> list[int]:
        """The block of the bars after a gap, read before it (empty where nothing follows, none without a
        block in the vocabulary)."""
        if self.suffix == 0:
            return []
        inside = [t for bar in bars[gap.stop : gap.stop + self.suffix] for t in self.plain(bar)]
        return [self.suffix_start, *inside, self.suffix_end]

    def head(self, task: str, bars: list[Bar], gap: range, given: IsGiven, room: int | None = None) -> Laid:
        """What a window or request of `task` reads before the bars of `gap` it writes: its task token, then for
        an infill the bars before the gap and the block of those after it. With `room`, the earliest bars
        before the gap are left out until the head and the gap's bars (as they stand) fit in `room` tokens."""
        laid = Laid()
        laid.add(task_ids(self.tokenizer, task), True)
        if task != "infill":
            return laid
        block = self.after(bars, gap)
        # bar by bar, so that the earliest can be left out: nothing before a gap is steered
        before = [self.lay_out(bars, range(b, b + 1), given) for b in range(gap.start)]
        if room is not None:
            size = 1 + len(laid.ids) + len(block) + sum(len(self.plain(bars[b])) for b in gap)
            while before and size + sum(len(bar.ids) for bar in before) > room:
                before.pop(0)
        for bar in before:
            laid.extend(bar)
        laid.add(block, True)
        return laid

    def ending(self, goes_on: bool) -> Laid:
        """What follows the bars a window or request writes: the next bar's Bar and EOS where the music `goes_on`
        (EOS given: generation forces it), EOS alone where it ends there or the run is from before task tokens."""
        laid = Laid()
        if goes_on and self.tasks:
            laid.add([self.bar], False)
            laid.add([self.eos], True)
        else:
            laid.add([self.eos], False)
        return laid

    def window(self, task: str, bars: list[Bar], gap: range, given: IsGiven, controls: Controls | None = None) -> Laid:
        """A training window of `task` after its BOS: its head, then the bars of `gap` (for accompany, all
        of the window's) laid out; the caller ends it as a request ends (`ending`)."""
        laid = self.head(task, bars, gap, given)
        laid.extend(self.lay_out(bars, gap, given, controls))
        return laid

    @staticmethod
    def plain(bar: Bar) -> list[int]:
        return [
            *bar.head,
            *(t for o in bar.onsets for t in (o.position, *o.head, *(u for n in o.notes for u in n.ids))),
        ]

    def played(self, ids: list[int]) -> list[int]:
        """The ids without their task token, blocks and control groups: what decodes into notes."""
        out, inside = [], False
        for i, t in enumerate(ids):
            if t in (self.start, self.suffix_start):
                inside = True
            elif t in (self.end, self.suffix_end):
                inside = False
            elif inside or self.is_control[t] or t in self.tasks:
                continue
            elif self.kind[t] == 3 and i + 1 < len(ids) and self.is_control[ids[i + 1]]:
                continue  # the Program that opens a control group
            else:
                out.append(t)
        return out
