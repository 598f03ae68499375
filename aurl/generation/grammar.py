"""Constrained decoding: which tokens may come next, from the tokenizer's own grammar.

MidiTok describes each tokenization by a graph of which token types may follow which
(`tokenizer.tokens_types_graph`) and counts as errors what breaks it (`tokenizer.tokens_errors`): a wrong
type, a Position that does not move forward within a bar, a note repeated at the same onset, a NoteOff
with no sounding NoteOn. `Grammar` mirrors those rules as lookup tables over the vocabulary and a little
state per sequence, so the mask of allowed next tokens is a handful of tensor gathers per step: every
sample it allows decodes with zero errors.

A learned (BPE) id stands for a run of base tokens. A run comes from the training data, so its inside
already obeys the rules; what the grammar checks is where the run meets the state: its first token's type,
its first Position against the current one, the pitches it begins before its first time step against
those already begun, and the notes it ends against those sounding. The state then moves by the run's
summary (its last types, position and program, the onset it leaves, the notes it switches on and off).
"""

from __future__ import annotations

import miditok
import torch

from aurl.data.tokenize import base_tokens
from aurl.errors import ConfigError

NOTE_ON = ("Pitch", "NoteOn", "PitchDrum", "DrumOn")
NOTE_OFF = ("NoteOff", "DrumOff")
TIME_RESET = ("TimeShift", "Time-Shift", "Rest")  # tokens that move time on and end the current onset
# Types that continue a note already begun: a piece never opens with them.
CONTINUATION = ("Velocity", "Duration", *NOTE_OFF)
# "Ahead", "Suffix", "Task": the time-ordered layout's blocks and task tokens (aurl.data.layout), only ever forced
SPECIAL = ("PAD", "BOS", "EOS", "MASK", "Ahead", "Suffix", "Task")
SPARE = 129  # program slot 129 of the per-program tables is never a program: padding writes land there


def _pad(rows: list[list[int]]) -> torch.Tensor:
    """Ragged lists of ints as one tensor, -1 where a row is short (at least one column)."""
    width = max(1, *(len(r) for r in rows))
    return torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long)


def _pairs(rows: list[list[tuple]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per id, the programs and the pitches of its (program, pitch, ...) entries, -1 padded."""
    return _pad([[e[0] for e in r] for r in rows]), _pad([[e[1] for e in r] for r in rows])


class Grammar:
    """Lookup tables for one tokenizer; `start(batch)` gives the state the sampler threads through."""

    def __init__(self, tokenizer: miditok.MusicTokenizer, device: torch.device | str = "cpu"):
        name = type(tokenizer).__name__
        rules = self._rules_of(tokenizer)
        errors = type(rules)._tokens_errors
        if errors is miditok.MusicTokenizer._tokens_errors:
            self.rules = "onset"  # REMI, TSD, Structured: MidiTok's shared checks
        elif errors is miditok.MIDILike._tokens_errors:
            self.rules = "note_off"
        else:
            raise ConfigError(
                f"generate.constrained: no grammar for {name} tokens (REMI, TSD, Structured, MIDILike have one); "
                "set generate.constrained=false"
            )
        cfg = tokenizer.config
        if cfg.use_pitch_intervals or cfg.additional_params.get("max_duration"):
            raise ConfigError(
                "generate.constrained: pitch intervals and max_duration are not covered by the grammar; "
                "set generate.constrained=false"
            )
        vocab: dict[str, int] = tokenizer.vocab  # the base tokens
        types = sorted({self._type_name(token) for token in vocab})
        index = {t: i for i, t in enumerate(types)}
        self.types, self.type_index = types, index
        self.type_of = torch.zeros(len(vocab), dtype=torch.long)
        self.value = torch.full((len(vocab),), -1, dtype=torch.long)
        # Positions in a bar of each TimeSig token (MidiTok: numerator x positions per beat, whatever the
        # denominator); a Position past its bar's end would put notes in the next bar.
        self.bar_length = torch.full((len(vocab),), -1, dtype=torch.long)
        self.default_bar_length = 4 * cfg.max_num_pos_per_beat  # 4/4 until a TimeSig says otherwise
        self.meters: dict[str, int] = {}  # "3/4" → its TimeSig id
        for token, i in vocab.items():
            kind, _, value = token.partition("_")
            self.type_of[i] = index[self._type_name(token)]
            if kind in ("Position", "Program", *NOTE_ON, *NOTE_OFF):
                self.value[i] = int(value)
            if kind == "TimeSig":
                self.bar_length[i] = int(value.split("/")[0]) * cfg.max_num_pos_per_beat
                self.meters[value] = i

        def ids_of(*kinds: str) -> torch.Tensor:
            return torch.isin(self.type_of, torch.tensor([index[k] for k in kinds if k in index], dtype=torch.long))

        self.is_bar = ids_of("Bar")
        self.is_position = ids_of("Position")
        self.is_program = ids_of("Program")
        self.is_note_on = ids_of(*NOTE_ON)
        self.is_note_off = ids_of(*NOTE_OFF)
        self.is_time_reset = ids_of(*TIME_RESET)
        self.is_time = ids_of(*TIME_RESET, "TimeSig")
        self.is_hold = ids_of("Hold")
        self.program_index = torch.where(self.is_program, self.value + 1, 0)
        self.pitch = self.value.clamp(0, 127)  # a safe index; only read where is_note_on / is_note_off
        self.rest = index.get("Rest", -1)
        self.time_sig = index.get("TimeSig", -1)
        self.bos, self.eos, self.pad = (index[k] for k in ("BOS", "EOS", "PAD"))
        self.eos_id, self.pad_id = vocab["EOS_None"], vocab["PAD_None"]
        # the bars after an infill gap, read in a prompt before it: they move no state (see replay)
        self.suffix = [vocab.get(name, -1) for name in ("Suffix_Start", "Suffix_End")]
        self.track_duplicates = cfg.remove_duplicated_notes
        # MIDILike counts a note never switched off as an error: such pieces end only once all are off.
        self.track_sounding = self.rules == "note_off" and cfg.using_note_duration_tokens
        self.needs_closing = self.track_sounding

        # allowed[a, b]: a token of type b may follow one of type a. After BOS: what opens a piece (a bar
        # where the tokenization has bars); EOS may end any piece; nothing is sampled after EOS but PAD.
        real = [t for t in types if t not in SPECIAL]
        allowed = torch.zeros(len(types), len(types), dtype=torch.bool)
        for a in real:
            for b in rules.tokens_types_graph.get(a, ()):
                if b in real:
                    allowed[index[a], index[b]] = True
            allowed[index[a], self.eos] = True
        opening = ["Bar"] if "Bar" in index else [t for t in real if t not in CONTINUATION]
        allowed[self.bos, [index[t] for t in opening]] = True
        if "Task" in index:  # a piece opens after its task token as it would after BOS
            allowed[index["Task"]] = allowed[self.bos]
        if "Hold" in index:  # onset frames (aurl.data.frames): a Program, then Hold where its note would be
            allowed[:, index["Hold"]] = False  # MidiTok's graph lets a special token follow anything
            allowed[index["Program"], index["Hold"]] = True
            allowed[index["Hold"]] = allowed[index["Duration"]]
        allowed[self.eos, self.pad] = allowed[self.pad, self.pad] = True
        self.allowed = allowed
        self._runs([[vocab[t] for t in run] for run in base_tokens(tokenizer)])
        self.to(device)

    @staticmethod
    def _rules_of(tokenizer: miditok.MusicTokenizer) -> miditok.MusicTokenizer:
        """The tokenizer whose type graph and error rules the grammar mirrors."""
        return tokenizer

    @staticmethod
    def _type_name(token: str) -> str:
        return token.partition("_")[0]

    def _runs(self, runs: list[list[int]]) -> None:
        """Tables over every id (base or learned) of the run of base ids it stands for: what it needs of
        the state (mask) and what it does to it (update), so both cost the same for a run of any length.
        Programs are indices (program + 1, drums 0), or -1 for whichever program the state is in."""
        self.run_length = torch.tensor([len(r) for r in runs])
        self.first = torch.tensor([r[0] if r else 0 for r in runs])
        self.first_type = self.type_of[self.first]
        self.last_type = torch.tensor([int(self.type_of[r[-1]]) if r else self.pad for r in runs])
        self.last2_type = torch.tensor([int(self.type_of[r[-2]]) if len(r) > 1 else -1 for r in runs])
        first_position, at_start, exempt, position, program, resets, began, tail, ended, delta = zip(
            *(self._summary(run) for run in runs), strict=True
        )
        self.first_position, self.position_at_start = torch.tensor(first_position), torch.tensor(at_start)
        self.position_exempt = torch.tensor(exempt)
        self.position_after = torch.tensor(position)  # -2: unchanged, -1: a new bar, else the last Position
        self.program_after = torch.tensor(program)  # -1: unchanged
        self.resets = torch.tensor(resets)  # the run starts a new onset: the begun pitches clear
        # (program, pitch) pairs, -1 padded: begun before the run's first time step (checked against the
        # state's onset), begun after its last one (the new onset), ended without being begun in the run
        # (must be sounding), and every switch on (+1) or off (-1).
        self.began_program, self.began_pitch = _pairs(began)
        self.tail_program, self.tail_pitch = _pairs(tail)
        self.ended_program, self.ended_pitch = _pairs(ended)
        self.delta_program, self.delta_pitch = _pairs(delta)
        self.delta = _pad([[d for *_, d in r] for r in delta]) * (self.delta_pitch >= 0)
        self.single = self.run_length == 1  # base tokens: the closing phase uses these alone
        # the bar length the run's last TimeSig sets (-1: unchanged)
        lengths = [[int(self.bar_length[t]) for t in r if self.bar_length[t] >= 0] for r in runs]
        self.bar_length_after = torch.tensor([found[-1] if found else -1 for found in lengths])
        # the TimeSig ids each run writes: the last (-1: none), and whether they are not all one
        sigs = [[t for t in r if self.bar_length[t] >= 0] for r in runs]
        self.meter_after = torch.tensor([found[-1] if found else -1 for found in sigs])
        self.meter_mixed = torch.tensor([len(set(found)) > 1 for found in sigs])

    def _summary(self, run: list[int]) -> tuple:
        """What one run of base ids needs of the state and does to it (see _runs), walked token by token."""
        first_position, at_start, exempt, position, program = -1, False, False, -2, -1
        resets, began, tail, ended, delta, sounding_here, bar_seen = False, [], [], [], [], set(), False
        for j, t in enumerate(run):
            if self.is_program[t]:
                program = int(self.value[t]) + 1
            if self.is_bar[t]:
                position, bar_seen = -1, True  # positions start again: later ones need nothing of the state
            if self.is_position[t]:
                position = int(self.value[t])
                if first_position < 0 and not bar_seen:
                    # the first Position before any Bar must move forward from the state's, unless a Rest
                    # (or a Rest and a TimeSig) comes just before it: MidiTok's own exception
                    first_position, at_start = position, j == 0
                    before = [int(self.type_of[u]) for u in run[max(0, j - 2) : j]]
                    exempt = before[-1:] == [self.rest] or before == [self.rest, self.time_sig]
            if self.is_time_reset[t] or (self.rules == "onset" and (self.is_bar[t] or self.is_position[t])):
                resets, tail = True, []
            note = (program, int(self.pitch[t]))
            if self.is_note_on[t]:
                tail.append(note)
                delta.append((*note, 1))
                sounding_here.add(note)
                if not resets:
                    began.append(note)
            if self.is_note_off[t]:
                delta.append((*note, -1))
                if note not in sounding_here:
                    ended.append(note)
        return first_position, at_start, exempt, position, program, resets, began, tail, ended, delta

    def to(self, device: torch.device | str) -> Grammar:
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        return self

    def start(self, batch: int) -> dict[str, torch.Tensor]:
        """The state of `batch` sequences that have only their BOS so far."""
        device = self.type_of.device
        state = {
            "prev": torch.full((batch,), self.bos, dtype=torch.long, device=device),
            "prev2": torch.full((batch,), self.bos, dtype=torch.long, device=device),
            "position": torch.full((batch,), -1, dtype=torch.long, device=device),
            "bar_length": torch.full((batch,), self.default_bar_length, dtype=torch.long, device=device),
            "program": torch.ones(batch, dtype=torch.long, device=device),  # program index = program + 1
            # the meter held: the TimeSig id every later bar must write (-1: none yet, the next one written
            # is held), and whether it is held at all (see set_meter)
            "meter": torch.full((batch,), -1, dtype=torch.long, device=device),
            "hold": torch.ones(batch, dtype=torch.bool, device=device),
        }
        if self.track_duplicates:  # pitches begun at the current onset, per program (drums at index 0)
            state["onset"] = torch.zeros(batch, 130, 128, dtype=torch.bool, device=device)
        if self.track_sounding:  # notes on and not yet off, per program and pitch
            state["sounding"] = torch.zeros(batch, 130, 128, dtype=torch.long, device=device)
        if bool(self.is_hold.any()):  # onset frames: whether a note has started on the current onset
            state["started"] = torch.ones(batch, dtype=torch.bool, device=device)
        return state

    def bare(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch,) rows at an onset that so far holds only hold pairs: a note must start on it before time moves
        on, as on every onset of the training data (a hold pair restates a note, it plays none)."""
        if "started" not in state:
            return torch.zeros_like(state["prev"], dtype=torch.bool)
        return (state["prev"] == self.type_index["Hold"]) & ~state["started"]

    def _lookup(
        self, table: torch.Tensor, state: dict[str, torch.Tensor], programs: torch.Tensor, pitches: torch.Tensor
    ):
        """table (batch, 130, 128) read at each id's (program, pitch) pairs (ids, pairs) → (batch, ids, pairs).
        Padding pairs read False / 0."""
        rows = torch.arange(table.shape[0], device=table.device)[:, None, None]
        return table[rows, self._program(programs[None], state["program"]), pitches.clamp(min=0)] * (pitches >= 0)

    def mask(self, state: dict[str, torch.Tensor], closing: bool = False) -> torch.Tensor:
        """(batch, vocab) True where a token may come next. `closing`: the token budget is spent, so only
        what switches sounding notes off (and then EOS) may follow."""
        first = self.first
        ok = self.allowed[state["prev"]][:, self.first_type] & (self.run_length > 0)
        if self.rules == "onset":
            # Positions move forward within a bar, except right after a Rest (MidiTok's own exception).
            after_rest = (state["prev"] == self.rest) | (
                (state["prev"] == self.time_sig) & (state["prev2"] == self.rest)
            )
            backwards = (self.first_position[None, :] <= state["position"][:, None]) & (self.first_position >= 0)
            exempt = self.position_exempt | (self.position_at_start & after_rest[:, None])
            ok &= ~(backwards & ~exempt)
            ok &= ~(self.first_position[None, :] >= state["bar_length"][:, None])  # within the bar
        # a held meter: a TimeSig other than the held one never comes
        held = (state["hold"] & (state["meter"] >= 0))[:, None]
        ok &= ~(held & (self.meter_after >= 0) & (self.meter_mixed | (self.meter_after != state["meter"][:, None])))
        if self.track_duplicates:
            taken = self._lookup(state["onset"], state, self.began_program, self.began_pitch)
            ok &= ~taken.any(-1)
        ok &= ~self.bare(state)[:, None] | self.is_program[first][None]
        if self.track_sounding:
            sounding = state["sounding"] > 0
            on = self._lookup(sounding, state, self.ended_program, self.ended_pitch)
            ok &= ~(~on & (self.ended_pitch >= 0)).any(-1)  # every note a token ends is sounding
            ok[:, self.eos_id] &= ~sounding.flatten(1).any(1)
            if closing:  # base tokens only: no new notes, programs only with notes to end, time moves on once
                busy_programs = sounding.any(2)[:, self.program_index[first]]
                after_time = torch.isin(state["prev"], self.type_of[self.is_time])
                closed = ok & self.single & ~self.is_note_on[first] & ~(self.is_program[first] & ~busy_programs)
                closed &= ~(self.is_time[first] & after_time[:, None])
                # a Program with nothing sounding was chosen just before the budget ran out: it needs its note
                ok = torch.where(closed.any(1, keepdim=True), closed, ok & self.single)
        return ok

    def update(self, state: dict[str, torch.Tensor], token: torch.Tensor) -> None:
        """Advance the state of each sequence by its next token (batch,): by the whole run of a learned id."""
        rows = torch.arange(token.shape[0], device=token.device)[:, None]
        last2 = self.last2_type[token]
        state["prev2"] = torch.where(last2 >= 0, last2, state["prev"])
        state["prev"] = self.last_type[token]
        position = self.position_after[token]
        state["position"] = torch.where(position == -2, state["position"], position)
        length = self.bar_length_after[token]
        state["bar_length"] = torch.where(length >= 0, length, state["bar_length"])
        meter = self.meter_after[token]
        state["meter"] = torch.where(meter >= 0, meter, state["meter"])
        before, program = state["program"], self.program_after[token]
        state["program"] = torch.where(program >= 0, program, before)
        if self.track_duplicates:
            state["onset"][self.resets[token]] = False
            pitch = self.tail_pitch[token]
            # padding writes to program slot SPARE, which nothing reads
            where = torch.where(pitch >= 0, self._program(self.tail_program[token], before), SPARE)
            state["onset"][rows, where, pitch.clamp(min=0)] = True
        if "started" in state:  # base ids only: holds are not learned into runs (tokenizer.holds)
            moved = self.is_position[token] | self.is_bar[token]
            state["started"] = (state["started"] & ~moved) | self.is_note_on[token]
        if self.track_sounding:
            where = self._program(self.delta_program[token], before)
            index = (rows.expand_as(where), where, self.delta_pitch[token].clamp(min=0))
            state["sounding"].index_put_(index, self.delta[token], accumulate=True)

    @staticmethod
    def _program(programs: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """Program indices of runs' notes: their own, or (-1) the state's program, current (batch,)."""
        return torch.where(programs < 0, current.view(-1, *(1,) * (programs.dim() - 1)), programs)

    def meter_id(self, meter: str) -> int | None:
        """The TimeSig id a generate.meter setting asks for: None for "hold" and "free" (see set_meter); a
        ConfigError names a meter this tokenizer cannot write."""
        if meter in ("hold", "free"):
            return None
        if meter not in self.meters:
            known = ", ".join(self.meters) or "none: tokenizer.use_time_signatures is false"
            raise ConfigError(f"generate.meter {meter}: not a time signature this run writes ({known}); or hold, free")
        return self.meters[meter]

    def set_meter(self, state: dict[str, torch.Tensor], meters: list[str]) -> None:
        """Apply each row's generate.meter, after its prompt was replayed: "hold" keeps the meter the prompt
        last wrote (or, with none, the first one written), "free" lets the model change it at any bar, and a
        time signature ("3/4") is held from the next bar on."""
        for row, meter in enumerate(meters):
            state["hold"][row] = meter != "free"
            chosen = self.meter_id(meter)
            if chosen is not None:
                state["meter"][row] = chosen

    def replay(self, state: dict[str, torch.Tensor], tokens: torch.Tensor) -> None:
        """Advance the state over tokens (batch, time) already in the sequences, e.g. a primer; a block of the
        bars after an infill gap is read, not written where the prompt stands, so it moves nothing."""
        start, end = self.suffix
        inside = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        for t in range(tokens.shape[1]):
            token = tokens[:, t]
            aside = inside | (token == start)
            inside = aside & (token != end)
            if bool(aside.all()):
                continue
            before = {key: value.clone() for key, value in state.items()} if bool(aside.any()) else None
            self.update(state, token)
            if before is not None:
                for key, value in before.items():
                    state[key] = torch.where(aside.view(-1, *(1,) * (value.dim() - 1)), value, state[key])
