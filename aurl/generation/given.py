"""Given material in the time-ordered stream (REMI with programs): what a co-creation request keeps, forced
in place at its onsets while the model writes the other tracks around it.

The request is laid out as the run trained (aurl.data.layout): each bar opens with its Bar, the song's
time signature and the block anticipating the given notes ahead; each onset with a Position, then its given
tokens (a tempo, given notes), then the model's own notes. A `Given` is what one request forces, bar by bar.
`GivenGrammar` holds the sampler to it: the model may write onsets of its own between the given ones but never
past the next one in the bar; when it writes that onset's Position the given tokens there are forced, and the
model may then add notes of its own tracks at the same onset. A bar ends only once its given onsets are
written, each Bar brings the song's time signature and its block, the request writes exactly the song's bars
(and, where the song goes on after them, the next bar's Bar, as the layout ends such a window)
and then ends, and the model's own notes are on the written tracks' programs only. A request may steer the
written tracks with attribute controls: each bar's opening then ends with the layout's control groups
(`Program_p` and p's controls), forced like the rest of it and read as an aside, as the block is. Forcing a
token is a mask that allows only that token, so the sampler needs nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import miditok
import torch

from aurl.data.controls import is_control
from aurl.data.frames import frames_of
from aurl.data.layout import AHEAD_TOKENS, Bar, Controls, IsGiven, Layout
from aurl.generation.grammar import SPARE, Grammar


@dataclass
class Onset:
    bar: int  # 0-based, counted from the first bar the request writes
    position: int
    tokens: list[int]  # what follows its Position token: tempo, given notes


@dataclass
class Given:
    """What one row must write around its own notes: `bars` bars, each opening with these tokens after its Bar
    (time signature, anticipated block, control groups), with these given onsets, its own notes on `programs`
    only."""

    openings: list[list[int]]
    onsets: list[Onset]
    programs: list[int]  # written programs (-1: drums)
    goes_on: bool = False  # the song goes on after these bars: they end with the next bar's Bar, then EOS
    # per bar, the given programs' hold pairs forced after a Position the model writes where no given note
    # starts, by Position value (onset frames, aurl.data.frames; empty without them)
    holds: list[dict[int, list[int]]] = field(default_factory=list)

    @property
    def bars(self) -> int:
        return len(self.openings)

    @property
    def forced(self) -> int:
        """The most tokens the plan forces (given notes, Bars, time signatures, blocks, controls)."""
        openings = sum(1 + len(opening) for opening in self.openings)
        return sum(1 + len(o.tokens) for o in self.onsets) + openings + self.goes_on


def plan_of(
    layout: Layout,
    bars: list[Bar],
    span: range,
    given: IsGiven,
    programs: list[int],
    controls: Controls | None = None,
) -> Given:
    """What a request writing `programs` in the bars of `span` (of the song's `bars`) is given, laid out as in
    training. `controls(bar, program)`, with `bar` an index into `bars` or None for the track as a whole,
    names the control ids that steer a written program there ([]: none); track-level ones open the span. Where
    the song goes on after the span, it ends as the layout ends such a window (Layout.ending)."""
    openings, onsets = [], []
    for k, b in enumerate(span):
        steering = layout.steering(b, programs, programs if k == 0 else (), controls) if controls else []
        openings.append([*bars[b].head[1:], *layout.anticipated(bars, b, given), *steering])
        for onset in bars[b].onsets:
            # an onset is the song's where a given note starts on it (or its tempo changes); one where only
            # given notes go on is the model's to open, their hold pairs then forced (Given.holds)
            if onset.head or any(not n.hold and given(b, n.program) for n in onset.notes):
                held = layout.held(onset, lambda program, b=b: given(b, program))
                onsets.append(Onset(k, int(layout.value[onset.position]), held))
    ending = layout.ending(span.stop < len(bars)).ids
    frames = frames_of(layout.tokenizer)
    holds = frames.given_holds(bars, span, given) if frames is not None else []
    return Given(openings, onsets, programs, goes_on=ending[0] == layout.bar, holds=holds)


# what an anticipated block's tokens move in the state
ASIDE = ("prev", "prev2", "position", "program", "onset_program", "left")


class GivenGrammar(Grammar):
    """The single-stream grammar, and with a plan (`plan(state, givens)`) the given material held in place."""

    def __init__(self, tokenizer: miditok.MusicTokenizer, device: torch.device | str = "cpu"):
        super().__init__(tokenizer, device="cpu")
        vocab = tokenizer.vocab
        self.bar_id = vocab["Bar_None"]
        self.is_bar_token = torch.arange(len(self.type_of)) == self.bar_id
        self.is_eos_token = torch.arange(len(self.type_of)) == self.eos_id
        self.program_id = {int(self.value[i]): i for i in torch.nonzero(self.is_program).flatten().tolist()}
        # never free under a plan: the song's tempo and meter are given
        self.set_by_song = self.is_time & ~self.is_time_reset
        self.set_by_song |= self.type_of == self.type_index.get("Tempo", -1)
        self.drum_note = self.type_of == self.type_index.get("PitchDrum", -1)
        self.pitched_note = self.is_note_on & ~self.drum_note
        self.after_position = self.type_index["Position"]
        self.ahead_start, self.ahead_end = (vocab.get(name, -1) for name in AHEAD_TOKENS)
        self.is_control = torch.from_numpy(is_control(tokenizer)[: len(vocab)])
        self.to(device)

    def plan(self, state: dict[str, torch.Tensor], givens: list[Given]) -> int:
        """Make each row of `state` (past its prompt, at a bar line) write around its Given; returns the most
        tokens a plan forces, which the sampler allows past the token budget to finish. One Given serves
        every row."""
        device = self.type_of.device
        if len(givens) == 1:
            givens = givens * state["prev"].shape[0]
        most = max([1, *(len(g.onsets) for g in givens)])
        width = max(
            [
                1,
                *(len(o.tokens) for g in givens for o in g.onsets),
                *(len(o) for g in givens for o in g.openings),
                *(len(h) for g in givens for bar in g.holds for h in bar.values()),
            ]
        )
        # Position values past the last with holds read an empty slot
        slots = 2 + max([0, *(p for g in givens for bar in g.holds for p in bar)])
        bars = max([1, *(g.bars for g in givens)])
        never = 2**31 - 1  # the sentinel after the last onset: in no bar
        bar_of = torch.full((len(givens), most + 1), never, dtype=torch.long)
        position = torch.full_like(bar_of, never)
        tokens = torch.full((len(givens), most + 1, width), -1, dtype=torch.long)
        openings = torch.full((len(givens), bars + 1, width), -1, dtype=torch.long)
        writable = torch.zeros(len(givens), len(self.type_of), dtype=torch.bool)
        holds = torch.full((len(givens), bars + 1, slots, width), -1, dtype=torch.long)
        for row, given in enumerate(givens):
            for k, bar in enumerate(given.holds):
                for p, ids in bar.items():
                    holds[row, k, p, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            for k, onset in enumerate(given.onsets):
                bar_of[row, k], position[row, k] = onset.bar, onset.position
                tokens[row, k, : len(onset.tokens)] = torch.tensor(onset.tokens, dtype=torch.long)
            for k, opening in enumerate(given.openings):
                openings[row, k, : len(opening)] = torch.tensor(opening, dtype=torch.long)
            writable[row, [self.program_id[p] for p in given.programs if p in self.program_id]] = True
        values = {
            "given_bar": bar_of,
            "given_position": position,
            "given_tokens": tokens,
            "openings": openings,
            "holds": holds,
            "writable": writable,
            "bars_total": torch.tensor([g.bars for g in givens]),
            "goes_on": torch.tensor([g.goes_on for g in givens]),
            "bar": torch.full((len(givens),), -1, dtype=torch.long),  # the bar being written, -1 before the first
            "next": torch.zeros(len(givens), dtype=torch.long),  # the next given onset
            "queue": torch.full((len(givens), width), -1, dtype=torch.long),  # tokens forced next, in order
            "head": torch.full((len(givens),), width, dtype=torch.long),
            # at the current onset: the program being written (-1: none yet) and those already left
            "onset_program": torch.full((len(givens),), -1, dtype=torch.long),
            "left": torch.zeros(len(givens), SPARE + 1, dtype=torch.bool),
        }
        # the state before an anticipated block, restored after it: the block is an aside
        values |= {f"before_{key}": values[key].clone() if key in values else state[key].clone() for key in ASIDE}
        state.update({name: value.to(device) for name, value in values.items()})
        return max(g.forced for g in givens)

    @staticmethod
    def _forced(state: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch,) the token each row must write next, -1 where it is free."""
        queue, head = state["queue"], state["head"]
        inside = head < queue.shape[1]
        return torch.where(inside, queue.gather(1, head.clamp(max=queue.shape[1] - 1)[:, None])[:, 0], -1)

    def _steering(self, state: dict[str, torch.Tensor], token: torch.Tensor, forced: torch.Tensor) -> torch.Tensor:
        """(batch,) whether each row's token is part of a forced control group: a control, or the Program
        forced just before one (a given note's Program is followed by its pitch)."""
        queue, head = state["queue"], state["head"]
        after = queue.gather(1, (head + 1).clamp(max=queue.shape[1] - 1)[:, None])[:, 0]
        opens = self.is_program[token] & (head + 1 < queue.shape[1]) & (after >= 0) & self.is_control[after.clamp(0)]
        return (forced >= 0) & (self.is_control[token] | opens)

    def _next_onset(self, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch,) whether the next given onset is in the current bar, and its position."""
        rows = torch.arange(state["next"].shape[0], device=state["next"].device)
        in_bar = state["given_bar"][rows, state["next"]] == state["bar"]
        return in_bar, state["given_position"][rows, state["next"]]

    def mask(self, state: dict[str, torch.Tensor], closing: bool = False) -> torch.Tensor:
        ok = super().mask(state, closing)
        if "queue" not in state:
            return ok
        ok &= self.single  # a plan steps base token by base token
        # a plan's first bar opens right after the prompt (which may end inside a bar, or with a block)
        ok &= (state["bar"] >= 0)[:, None] | self.is_bar_token[None]
        in_bar, position = self._next_onset(state)
        # never past the bar's next given onset; writing its Position brings its given tokens
        ok &= ~(self.is_position[None] & in_bar[:, None] & (self.value[None] > position[:, None]))
        last = state["bar"] + 1 >= state["bars_total"]
        past = state["bar"] >= state["bars_total"]  # the next bar's Bar written: only EOS
        ok[:, self.bar_id] &= ~in_bar & (~last | state["goes_on"]) & ~past
        ok[:, self.eos_id] &= ~in_bar & last & (~state["goes_on"] | past)
        ok &= ~past[:, None] | self.is_eos_token[None]
        ok &= ~self.set_by_song & (~self.is_program | state["writable"])
        ok &= ~(self.is_program[None] & state["left"][:, self.program_index])
        # a bar's notes come after a Position, as the layout reads them (MidiTok would also take a TimeSig's)
        ok &= ~(self.is_program[None] & (state["prev"] == self.time_sig)[:, None])
        drums = (state["program"] == 0)[:, None]  # a drum track plays drum pitches only, others pitched notes
        ok &= torch.where(drums, ~self.pitched_note, ~self.drum_note)
        if closing:  # the budget is spent: only the given material to the end (and a note an onset needs)
            onset_open = ((state["prev"] == self.after_position) | self.bare(state))[:, None]
            ok &= (~self.is_program | onset_open) & ~self.is_hold
            ok &= ~(self.is_position[None] & (self.value[None] != position[:, None]))
        forced = self._forced(state)
        one = torch.zeros_like(ok).scatter_(1, forced.clamp(min=0)[:, None], True)
        return torch.where((forced >= 0)[:, None], one, ok)

    def update(self, state: dict[str, torch.Tensor], token: torch.Tensor) -> None:
        if "queue" not in state:
            super().update(state, token)
            return
        forced = self._forced(state)
        in_bar, position = self._next_onset(state)
        steering = self._steering(state, token, forced)
        unsteered = {key: state[key].clone() for key in ASIDE}
        for key in ASIDE:
            opens = (token == self.ahead_start).view(-1, *(1,) * (state[key].dim() - 1))
            state[f"before_{key}"] = torch.where(opens, state[key], state[f"before_{key}"])
        super().update(state, token)
        # an onset holds each program's notes together, as MidiTok writes them: a program left is not taken up
        # again there (an undertrained model would cycle through the voices, stacking notes)
        rows = torch.arange(token.shape[0], device=token.device)
        program = torch.where(self.is_program[token], self.program_index[token], -1)
        leaving = (program >= 0) & (state["onset_program"] >= 0) & (program != state["onset_program"])
        state["left"][rows, state["onset_program"].clamp(min=0)] |= leaving
        state["onset_program"] = torch.where(program >= 0, program, state["onset_program"])
        onset = self.is_position[token] | (token == self.bar_id)
        state["left"] &= ~onset[:, None]
        state["onset_program"] = torch.where(onset, -1, state["onset_program"])
        for key in ASIDE:
            ends = (token == self.ahead_end).view(-1, *(1,) * (state[key].dim() - 1))
            state[key] = torch.where(ends, state[f"before_{key}"], state[key])
            # a control group is an aside too: the bar's notes follow its time signature (and block) alone
            state[key] = torch.where(steering.view(-1, *(1,) * (state[key].dim() - 1)), unsteered[key], state[key])
        state["head"] += (token == forced) & (forced >= 0)
        arrived = (forced < 0) & self.is_position[token] & in_bar & (self.value[token] == position)
        state["queue"] = torch.where(arrived[:, None], state["given_tokens"][rows, state["next"]], state["queue"])
        state["next"] += arrived
        # an onset of the model's own: the given notes sounding through it are restated there (onset frames)
        placed = (forced < 0) & self.is_position[token] & ~arrived & (state["bar"] >= 0)
        slots = state["holds"].shape[2]
        where = (rows, state["bar"].clamp(min=0), self.value[token].clamp(0, slots - 1))
        state["queue"] = torch.where(placed[:, None], state["holds"][where], state["queue"])
        opened = token == self.bar_id
        state["bar"] += opened
        opening = state["openings"][rows, state["bar"].clamp(min=0)]
        state["queue"] = torch.where(opened[:, None], opening, state["queue"])
        state["head"] = torch.where(arrived | opened | placed, 0, state["head"])
