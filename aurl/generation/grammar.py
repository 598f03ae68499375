"""Constrained decoding: which tokens may come next, from the tokenizer's own grammar.

MidiTok describes each tokenization by a graph of which token types may follow which
(`tokenizer.tokens_types_graph`) and counts as errors what breaks it (`tokenizer.tokens_errors`): a wrong
type, a Position that does not move forward within a bar, a note repeated at the same onset, a NoteOff
with no sounding NoteOn. `Grammar` mirrors those rules as lookup tables over the vocabulary and a little
state per sequence, so the mask of allowed next tokens is a handful of tensor gathers per step: every
sample it allows decodes with zero errors.
"""

from __future__ import annotations

import miditok
import torch

from aurl.errors import ConfigError

NOTE_ON = ("Pitch", "NoteOn", "PitchDrum", "DrumOn")
NOTE_OFF = ("NoteOff", "DrumOff")
TIME_RESET = ("TimeShift", "Time-Shift", "Rest")  # tokens that move time on and end the current onset
# Types that continue a note already begun: a piece never opens with them.
CONTINUATION = ("Velocity", "Duration", *NOTE_OFF)
SPECIAL = ("PAD", "BOS", "EOS", "MASK")


class Grammar:
    """Lookup tables for one tokenizer; `start(batch)` gives the state the sampler threads through."""

    def __init__(self, tokenizer: miditok.MusicTokenizer, device: torch.device | str = "cpu"):
        name = type(tokenizer).__name__
        errors = type(tokenizer)._tokens_errors
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
        if tokenizer.is_trained or cfg.use_pitch_intervals or cfg.additional_params.get("max_duration"):
            raise ConfigError(
                "generate.constrained: BPE/Unigram vocabularies, pitch intervals and max_duration are not "
                "covered by the grammar; set generate.constrained=false"
            )
        vocab: dict[str, int] = tokenizer.vocab
        size = len(tokenizer)
        types = sorted({token.partition("_")[0] for token in vocab})
        index = {t: i for i, t in enumerate(types)}
        self.types = types
        self.type_of = torch.zeros(size, dtype=torch.long)
        self.value = torch.full((size,), -1, dtype=torch.long)
        for token, i in vocab.items():
            kind, _, value = token.partition("_")
            self.type_of[i] = index[kind]
            if kind in ("Position", "Program", *NOTE_ON, *NOTE_OFF):
                self.value[i] = int(value)

        def ids_of(*kinds: str) -> torch.Tensor:
            return torch.isin(self.type_of, torch.tensor([index[k] for k in kinds if k in index], dtype=torch.long))

        self.is_bar = ids_of("Bar")
        self.is_position = ids_of("Position")
        self.is_program = ids_of("Program")
        self.is_note_on = ids_of(*NOTE_ON)
        self.is_note_off = ids_of(*NOTE_OFF)
        self.is_time_reset = ids_of(*TIME_RESET)
        self.is_time = ids_of(*TIME_RESET, "TimeSig")
        self.program_index = torch.where(self.is_program, self.value + 1, 0)
        self.pitch = self.value.clamp(0, 127)  # a safe index; only read where is_note_on / is_note_off
        self.rest = index.get("Rest", -1)
        self.time_sig = index.get("TimeSig", -1)
        self.bos, self.eos, self.pad = (index[k] for k in ("BOS", "EOS", "PAD"))
        self.eos_id, self.pad_id = vocab["EOS_None"], vocab["PAD_None"]
        self.bar_id = vocab.get("Bar_None")
        self.track_duplicates = cfg.remove_duplicated_notes
        # MIDILike counts a note never switched off as an error: such pieces end only once all are off.
        self.track_sounding = self.rules == "note_off" and cfg.using_note_duration_tokens
        self.needs_closing = self.track_sounding

        # allowed[a, b]: a token of type b may follow one of type a. After BOS: what opens a piece (a bar
        # where the tokenization has bars); EOS may end any piece; nothing is sampled after EOS but PAD.
        real = [t for t in types if t not in SPECIAL]
        allowed = torch.zeros(len(types), len(types), dtype=torch.bool)
        for a in real:
            for b in tokenizer.tokens_types_graph.get(a, ()):
                if b in real:
                    allowed[index[a], index[b]] = True
            allowed[index[a], self.eos] = True
        opening = ["Bar"] if "Bar" in index else [t for t in real if t not in CONTINUATION]
        allowed[self.bos, [index[t] for t in opening]] = True
        allowed[self.eos, self.pad] = allowed[self.pad, self.pad] = True
        self.allowed = allowed
        self.to(device)

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
            "program": torch.ones(batch, dtype=torch.long, device=device),  # program index = program + 1
        }
        if self.track_duplicates:  # pitches begun at the current onset, per program (drums at index 0)
            state["onset"] = torch.zeros(batch, 130, 128, dtype=torch.bool, device=device)
        if self.track_sounding:  # notes on and not yet off, per program and pitch
            state["sounding"] = torch.zeros(batch, 130, 128, dtype=torch.long, device=device)
        return state

    def mask(self, state: dict[str, torch.Tensor], closing: bool = False) -> torch.Tensor:
        """(batch, vocab) True where a token may come next. `closing`: the token budget is spent, so only
        what switches sounding notes off (and then EOS) may follow."""
        ok = self.allowed[state["prev"]][:, self.type_of]
        rows = torch.arange(ok.shape[0], device=ok.device)
        if self.rules == "onset":
            # Positions move forward within a bar, except right after a Rest (MidiTok's own exception).
            after_rest = (state["prev"] == self.rest) | (
                (state["prev"] == self.time_sig) & (state["prev2"] == self.rest)
            )
            backwards = self.value[None, :] <= state["position"][:, None]
            ok &= ~(self.is_position & backwards & ~after_rest[:, None])
        if self.track_duplicates:
            taken = state["onset"][rows, state["program"]][:, self.pitch]
            ok &= ~(self.is_note_on & taken)
        if self.track_sounding:
            sounding = state["sounding"] > 0
            ok &= ~(self.is_note_off & ~sounding[rows, state["program"]][:, self.pitch])
            ok[:, self.eos_id] &= ~sounding.flatten(1).any(1)
            if closing:  # no new notes, programs only with notes to end, time moves on once at most
                busy_programs = sounding.any(2)[:, self.program_index]
                after_time = torch.isin(state["prev"], self.type_of[self.is_time])
                closed = ok & ~self.is_note_on & ~(self.is_program & ~busy_programs)
                closed &= ~(self.is_time & after_time[:, None])
                # a Program with nothing sounding was chosen just before the budget ran out: it needs its note
                ok = torch.where(closed.any(1, keepdim=True), closed, ok)
        return ok

    def update(self, state: dict[str, torch.Tensor], token: torch.Tensor) -> None:
        """Advance the state of each sequence by its next token (batch,)."""
        rows = torch.arange(token.shape[0], device=token.device)
        state["prev2"], state["prev"] = state["prev"], self.type_of[token]
        bar, position = self.is_bar[token], self.is_position[token]
        state["position"] = torch.where(bar, -1, torch.where(position, self.value[token], state["position"]))
        state["program"] = torch.where(self.is_program[token], self.value[token] + 1, state["program"])
        pitch, on = self.pitch[token], self.is_note_on[token]
        if self.track_duplicates:
            reset = self.is_time_reset[token] | (bar | position if self.rules == "onset" else False)
            state["onset"][reset] = False
            state["onset"][rows, state["program"], pitch] |= on
        if self.track_sounding:
            change = on.long() - self.is_note_off[token].long()
            state["sounding"][rows, state["program"], pitch] += change

    def replay(self, state: dict[str, torch.Tensor], tokens: torch.Tensor) -> None:
        """Advance the state over tokens (batch, time) already in the sequences, e.g. a primer."""
        for t in range(tokens.shape[1]):
            self.update(state, tokens[:, t])
