"""The grammar of multitrack (MMM) sequences, and the plan a co-creation request makes it follow.

Inside a track the base tokenization's rules hold (REMI: `Grammar` as it is). Around them MMM has its
own structure, which this subclass adds: BOS, then tracks `Track_Start Program_p Bar ... Track_End`,
then (for infilling) fills `Infill_Start Bar ... Infill_End`, then EOS; no Program token inside a track;
attribute controls pass through without touching the base state.

A `Segment` is one thing the sampler must write after the prompt: a new track or one infilled bar. Its
header is forced (Track_Start, Program and track-level controls; or Infill_Start and Bar), it has exactly
`bars` bars, a requested bar's controls are forced right after its Bar token, and it ends with its end
token; after the last segment EOS is forced. Forcing a token is a mask that allows only that token, so
the sampler needs nothing new. Without a plan (writing from nothing) tracks follow one another freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import miditok
import torch

from aurl.data.multitrack import INFILL_TOKENS, Multitrack
from aurl.generation.grammar import Grammar

STRUCTURE = ("Track_Start", "Track_End", *INFILL_TOKENS)


@dataclass
class Segment:
    header: list[int]  # forced first tokens
    bars: int  # exactly this many Bar tokens before the end token
    end: int  # Track_End or Infill_End
    controls: dict[int, list[int]] = field(default_factory=dict)  # bar index in the segment → forced after its Bar


class MultitrackGrammar(Grammar):
    def __init__(self, tokenizer: miditok.MusicTokenizer, device: torch.device | str = "cpu"):
        self.mt = Multitrack(tokenizer)
        super().__init__(tokenizer, device="cpu")
        index = self.type_index
        allowed = self.allowed
        body = [index[t] for t in self.types if t not in (*STRUCTURE, "AC", "Program", "PAD", "BOS", "EOS", "MASK")]
        structure = {t: index[t] for t in STRUCTURE}
        allowed[:, index["Program"]] = False  # a track's program is its header's, never changed inside it
        allowed[:, self.eos] = False
        for t in body:  # a track or fill may end where a new bar could begin: after a whole note, not inside it
            allowed[t, [structure["Track_End"], structure["Infill_End"]]] = bool(allowed[t, index["Bar"]])
        if "TimeSig" in index:  # MidiTok writes a bar's meter right after its Bar (or a Rest): never inside it
            allowed[[t for t in body if self.types[t] not in ("Bar", "Rest")], index["TimeSig"]] = False
        edges = {
            "BOS": ["Track_Start"],
            "Track_Start": ["Program"],
            "Program": ["Bar", "Track_End"],
            "Track_End": ["Track_Start", "EOS"],
            "Infill_Start": ["Bar"],
            "Infill_End": ["Infill_Start", "EOS"],
            "Infill_Bar": ["Infill_Bar", "Bar", "Track_End"],  # a taken bar, in prompts only
        }
        for a, successors in edges.items():
            allowed[index[a]] = False
            allowed[index[a], [index[b] for b in successors]] = True
        mt = self.mt
        self.control = torch.as_tensor(mt.is_control)
        # never sampled freely: controls and placeholders are only ever forced or given
        self.unsampled = self.control.clone()
        self.unsampled[[mt.infill_bar, mt.infill_start]] = True
        # what starts new material: held back while a segment is being closed at the token budget
        self.starting = self.is_position | self.is_note_on | self.is_program
        self.starting[[mt.track_start, mt.infill_start]] = True
        self.starting |= self.type_of == index.get("Tempo", -1)
        # a drum track (program index 0) plays drum pitches only, any other track pitched notes only
        self.drum_note = self.type_of == index.get("PitchDrum", -1)
        self.pitched_note = self.is_note_on & ~self.drum_note
        self.needs_closing = True
        self.to(device)

    @staticmethod
    def _rules_of(tokenizer: miditok.MusicTokenizer) -> miditok.MusicTokenizer:
        return tokenizer.base_tokenizer

    @staticmethod
    def _type_name(token: str) -> str:
        if token in STRUCTURE:
            return token
        return "AC" if token.startswith("AC") else token.partition("_")[0]

    def start(self, batch: int) -> dict[str, torch.Tensor]:
        state = super().start(batch)
        device = self.type_of.device
        state["bars"] = torch.zeros(batch, dtype=torch.long, device=device)  # bars of the current track
        state["song_bars"] = torch.full((batch,), -1, dtype=torch.long, device=device)  # the first track's
        return state

    def plan(self, state: dict[str, torch.Tensor], segments: list[Segment]) -> int:
        """Make every sequence of `state` (already past its prompt) write `segments`, then EOS; returns the
        tokens past the budget it needs at most beyond the sampler's own allowance (none)."""
        batch, device = state["prev"].shape[0], self.type_of.device
        width = max([1, *(len(s.header) for s in segments), *(len(c) for s in segments for c in s.controls.values())])
        most = max([1, *(s.bars for s in segments)])

        def padded(ids: list[int]) -> list[int]:
            return ids + [-1] * (width - len(ids))

        rows = {
            "headers": [padded(s.header) for s in segments] + [padded([self.mt.eos])],
            "limits": [s.bars for s in segments] + [0],
            "ends": [s.end for s in segments] + [-1],
            "bar_controls": [[padded(s.controls.get(b, [])) for b in range(most)] for s in segments]
            + [[padded([])] * most],
        }
        for name, value in rows.items():
            table = torch.tensor(value, dtype=torch.long, device=device)
            state[name] = table.expand(batch, *table.shape).clone()
        state["segment"] = torch.zeros(batch, dtype=torch.long, device=device)
        state["bars"] = torch.zeros(batch, dtype=torch.long, device=device)
        state["queue"] = state["headers"][:, 0].clone()
        state["head"] = torch.zeros(batch, dtype=torch.long, device=device)
        return 0

    def _forced(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch,) the token each sequence must write next, -1 where it is free."""
        queue, head = state["queue"], state["head"]
        inside = head < queue.shape[1]
        return torch.where(inside, queue.gather(1, head.clamp(max=queue.shape[1] - 1)[:, None])[:, 0], -1)

    def mask(self, state: dict[str, torch.Tensor], closing: bool = False) -> torch.Tensor:
        ok = super().mask(state) & ~self.unsampled
        drums = (state["program"] == 0)[:, None]
        ok &= torch.where(drums, ~self.pitched_note, ~self.drum_note)
        mt = self.mt
        if "queue" in state:
            rows = torch.arange(ok.shape[0], device=ok.device)
            segment = state["segment"]
            limit, end = state["limits"][rows, segment], state["ends"][rows, segment]
            full = state["bars"] >= limit
            ok[:, mt.track_end] &= full & (end == mt.track_end)
            ok[:, mt.infill_end] &= full & (end == mt.infill_end)
            ok[:, mt.bar] &= ~full
        else:  # free writing: every track after the first has the first one's bars
            limit = state["song_bars"]
            bounded = limit >= 0
            ok[:, mt.track_end] &= ~bounded | (state["bars"] >= limit)
            ok[:, mt.bar] &= ~bounded | (state["bars"] < limit)
            ok[:, mt.infill_end] = False
        if closing:  # the budget is spent: finish the segment without starting new material
            closed = ok & ~self.starting
            ok = torch.where(closed.any(1, keepdim=True), closed, ok)
        if "queue" in state:
            forced = self._forced(state)
            one = torch.zeros_like(ok).scatter_(1, forced.clamp(min=0)[:, None], True)
            ok = torch.where((forced >= 0)[:, None], one, ok)
        return ok

    def update(self, state: dict[str, torch.Tensor], token: torch.Tensor) -> None:
        prev, prev2 = state["prev"], state["prev2"]
        planned = "queue" in state
        forced = self._forced(state) if planned else None
        super().update(state, token)
        control = self.control[token]  # controls say something about what follows: the base state ignores them
        state["prev"] = torch.where(control, prev, state["prev"])
        state["prev2"] = torch.where(control, prev2, state["prev2"])
        mt = self.mt
        if not planned:
            state["bars"] += (token == mt.bar) | (token == mt.infill_bar)
            ended = token == mt.track_end
            state["song_bars"] = torch.where(ended & (state["song_bars"] < 0), state["bars"], state["song_bars"])
            state["bars"] = torch.where(ended, 0, state["bars"])
            return
        rows = torch.arange(token.shape[0], device=token.device)
        state["head"] += (token == forced) & (forced >= 0)
        segment = state["segment"]
        opened = token == mt.bar
        state["bars"] += opened
        # a Bar, once its header is written, brings the controls requested for it
        bar = (state["bars"] - 1).clamp(0, state["bar_controls"].shape[2] - 1)
        load = opened & (self._forced(state) < 0)
        state["queue"] = torch.where(load[:, None], state["bar_controls"][rows, segment, bar], state["queue"])
        # the segment's end token moves on to the next segment, whose header (or EOS) comes next
        ended = token == state["ends"][rows, segment]
        state["segment"] = segment + ended
        state["bars"] = torch.where(ended, 0, state["bars"])
        state["queue"] = torch.where(ended[:, None], state["headers"][rows, state["segment"]], state["queue"])
        state["head"] = torch.where(load | ended, 0, state["head"])
