"""The voice grid's grammar (aurl.data.grid): every frame `Position` and one token per voice, and with a plan the
given voices forced in their slots.

A stream is well-formed when each bar opens `Bar TimeSig`, its Positions move forward within the bar, each frame
holds exactly one token per voice and changes something (the encoder never writes a frame of holds), a voice
rests only where it sounds, and the piece ends (EOS) after a whole frame with every voice silent. A held meter
(generate.meter) keeps every TimeSig the same.

With a plan (`GridGiven`, a harmonisation) some voices are given: where the song changes a given voice, the
model must open a frame on that Position (it may open frames of its own between, never past it) and the given
voices' tokens are forced there; in a frame of the model's own they hold. A bar closes once its given changes
are written, every Bar brings the song's time signature, and the piece ends after the song's last bar. Forcing
is a mask that allows one token, so the sampler needs nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from aurl.data.grid import HOLD, REST, VoiceGrid
from aurl.errors import ConfigError


@dataclass
class GridGiven:
    """What one row is given: per bar its TimeSig id and, by Position value, the given voices' tokens there."""

    meters: list[int]
    changes: list[dict[int, dict[int, int]]]  # per bar: position → {voice slot: token id}
    given: list[int]  # the given voice slots
    voices: int  # slots in a frame
    goes_on: bool = False  # the song goes on after these bars: the row may end with notes sounding

    @property
    def bars(self) -> int:
        return len(self.meters)

    @property
    def forced(self) -> int:
        """The most tokens the plan forces (frames and bar openings)."""
        return sum(2 + len(bar) * (1 + self.voices) for bar in self.changes)


@dataclass
class _Row:
    phase: str = "start"  # start, bar (after Bar), frame (at a frame's end), slot, done
    slot: int = 0  # the next voice slot in a frame
    position: int = -1
    positions: int = 0  # Positions in the current bar
    sounding: list[int | None] = field(default_factory=list)  # each voice's pitch now (None: silent)
    changed: bool = False  # the current frame changes a voice
    meter: int = -1  # the held TimeSig id (-1: the next one written is held)
    hold: bool = True
    plan: GridGiven | None = None
    bar: int = -1  # bars opened under the plan
    frames: int = 0  # frames begun (in the first, a voice that does not begin rests: nothing sounded before)


class GridGrammar:
    """Masks over a VoiceGrid vocabulary; the state is a list of rows."""

    needs_closing = True

    def __init__(self, tokenizer: VoiceGrid, device: torch.device | str = "cpu"):
        vocab: dict[str, int] = tokenizer.vocab
        size = len(vocab)
        self.voices, self.device = tokenizer.voices, device
        res = tokenizer.config.max_num_pos_per_beat
        self.position = {i: int(t.split("_")[1]) for t, i in vocab.items() if t.startswith("Position_")}
        self.position_id = {v: i for i, v in self.position.items()}
        self.meters = {t.split("_")[1]: i for t, i in vocab.items() if t.startswith("TimeSig_")}
        self.bar_positions = {i: int(m.split("/")[0]) * res for m, i in self.meters.items()}
        self.bar, self.eos, self.rest = (vocab[t] for t in ("Bar_None", "EOS_None", REST))
        self.hold = vocab.get(HOLD, -1)
        self.pitch_of = {i: int(t.split("_")[1]) for t, i in vocab.items() if t.startswith("Pitch_")}
        self.tie = {int(t.split("_")[1]): i for t, i in vocab.items() if t.startswith("Tie_")}
        self.pitches = torch.zeros(size, dtype=torch.bool)
        self.pitches[list(self.pitch_of)] = True
        self.size = size

    def to(self, device: torch.device | str) -> GridGrammar:
        self.device = device
        self.pitches = self.pitches.to(device)
        return self

    def start(self, batch: int) -> list[_Row]:
        return [_Row(sounding=[None] * self.voices) for _ in range(batch)]

    def meter_id(self, meter: str) -> int | None:
        if meter in ("hold", "free"):
            return None
        if meter not in self.meters:
            raise ConfigError(
                f"generate.meter {meter}: not a time signature this run writes "
                f"({', '.join(self.meters)}); or hold, free"
            )
        return self.meters[meter]

    def set_meter(self, state: list[_Row], meters: list[str]) -> None:
        for row, meter in zip(state, meters, strict=True):
            row.hold = meter != "free"
            chosen = self.meter_id(meter)
            if chosen is not None:
                row.meter = chosen

    def replay(self, state: list[_Row], tokens: torch.Tensor) -> None:
        for t in range(tokens.shape[1]):
            self.update(state, tokens[:, t])

    def plan(self, state: list[_Row], givens: list[GridGiven]) -> int:
        """Make each row write around its plan (one serves every row); returns the most tokens a plan forces."""
        givens = givens * len(state) if len(givens) == 1 else givens
        for row, given in zip(state, givens, strict=True):
            row.plan, row.meter, row.bar = given, given.meters[0], -1
        return max(g.forced for g in givens) + self.voices + 2

    def _next_change(self, row: _Row) -> int | None:
        """The Position of the plan's next given change in the current bar, if any."""
        later = [p for p in row.plan.changes[row.bar] if p > row.position]
        return min(later) if later else None

    def allowed(self, row: _Row, closing: bool) -> list[int] | torch.Tensor:
        """The ids row may write next: a list, or a mask over the vocabulary."""
        plan = row.plan
        if row.phase == "done":
            return [self.eos]
        if row.phase == "start":
            return [self.bar]
        if row.phase == "bar":
            if plan is not None:
                return [plan.meters[row.bar]]
            return [row.meter] if row.hold and row.meter >= 0 else list(self.bar_positions)
        if row.phase == "slot":
            given = plan.changes[row.bar].get(row.position, {}) if plan is not None else {}
            keep = self._keep(row)
            if plan is not None and row.slot in plan.given:
                return [given.get(row.slot, keep)]
            last_change = not row.changed and all(
                plan is not None and s in plan.given and s not in given for s in range(row.slot + 1, self.voices)
            )
            sounding = row.sounding[row.slot] is not None
            out = []
            if not (last_change or (closing and sounding)):
                out.append(keep)
            if sounding:
                out.append(self.rest)
            if closing:
                return out or [self.rest]
            mask = self.pitches.clone()
            mask[out] = True
            return mask
        # at a frame's end: a later Position in the bar, the next bar, or the end
        out, upto = [], row.positions - 1
        change = self._next_change(row) if plan is not None else None
        if change is not None:
            upto = min(upto, change)
        out += [self.position_id[p] for p in range(row.position + 1, upto + 1) if p in self.position_id]
        silent = all(pitch is None for pitch in row.sounding)
        if plan is None:
            if not closing or not silent:
                out.append(self.bar)
            if silent:
                out.append(self.eos)
        elif change is None:
            if row.bar + 1 < plan.bars:
                out.append(self.bar)
            elif silent or plan.goes_on:
                out.append(self.eos)
        if closing and plan is None and silent:
            return [self.eos]
        return out or [self.eos]

    def _keep(self, row: _Row) -> int:
        """The token of the row's current slot that changes nothing: its pitch tied, or a rest going on (with
        holds: Hold, but in the first frame, where nothing sounded before, Rest)."""
        pitch = row.sounding[row.slot]
        if self.tie:
            return self.rest if pitch is None else self.tie[pitch]
        return self.rest if row.frames == 1 else self.hold

    def mask(self, state: list[_Row], closing: bool = False) -> torch.Tensor:
        out = torch.zeros(len(state), self.size, dtype=torch.bool, device=self.device)
        for r, row in enumerate(state):
            allowed = self.allowed(row, closing)
            if isinstance(allowed, torch.Tensor):
                out[r] = allowed
            else:
                out[r, allowed] = True
        return out

    def update(self, state: list[_Row], token: torch.Tensor) -> None:
        for row, t in zip(state, token.tolist(), strict=True):
            self._step(row, t)

    def _step(self, row: _Row, t: int) -> None:
        if t == self.eos:
            row.phase = "done"
        elif t == self.bar:
            row.phase, row.position = "bar", -1
            row.bar += 1
        elif t in self.bar_positions:
            row.phase, row.positions = "frame", self.bar_positions[t]
            if row.hold and row.meter < 0:
                row.meter = t
        elif t in self.position:
            row.phase, row.slot, row.position, row.changed = "slot", 0, self.position[t], False
            row.frames += 1
        elif row.phase == "slot":
            if t in self.pitch_of:
                row.changed, row.sounding[row.slot] = True, self.pitch_of[t]
            elif t == self.rest:
                row.changed |= row.sounding[row.slot] is not None
                row.sounding[row.slot] = None
            row.slot += 1
            if row.slot == self.voices:
                row.phase = "frame"
