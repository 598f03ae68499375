"""The voice grid: part music as one frame per onset, one token per voice in a fixed order.

In REMI a voice's previous note, and the notes sounding with it, sit at distances that change from onset to
onset, and a held note is not restated, so the pitch pairs that make a parallel fifth or a crossing are never
at fixed places in the stream. BachBot and TonicNet write the voices on a time grid instead, a step as the
soprano then the lower voices; DeepBach and Coconet read them the same way. `VoiceGrid` is that grid at the
onsets of the music rather than at every sixteenth (a frame wherever any voice starts or ends a note, so a
chorale costs about two tokens per note, not five):

    BOS Bar TimeSig_4/4 Position_0 Pitch_67 Pitch_62 Pitch_59 Pitch_43 Position_8 Hold Pitch_64 Hold Rest ...

Every frame is `Position` and then exactly one token per voice, highest voice first: `Pitch_p` where a note
starts, `Hold_Voice` where the voice goes on as it was (a note sounding on, or a rest going on) and
`Rest_Voice` where its note stops with nothing after it (`tokenizer.voice_ties`: a held note restated as
`Tie_p`, its pitch, and a silent voice as `Rest_Voice`, as BachBot writes ties, so that every voice's pitch now
is in every frame). So a voice's last token is always one frame back and the notes sounding with it are in its
own frame. Every bar opens `Bar TimeSig`, empty bars too; a piece ends
with a frame where its last notes stop.

It is for music in a fixed number of one-voice parts (the chorales: `tokenizer.voice_programs`); a file with
another number of tracks, or a track that plays two notes at once, is not one and `encode` says so. Voices are
ordered by their mean pitch, highest first, and decoded onto the programs of `voice_programs` in that order.
MidiTok's own preprocessing (resampling onto `beat_res`, time signatures, duplicated notes) comes first, so
the grid's positions are REMI's. Tempos and velocities are not written: a decoded piece plays at MidiTok's
default tempo and one velocity.
"""

from __future__ import annotations

from collections.abc import Sequence

import miditok
import numpy as np
from miditok.constants import TIME_SIGNATURE
from symusic import Note, Score, TimeSignature, Track

HOLD = "Hold_Voice"
REST = "Rest_Voice"
SLOT = ("Pitch", "Tie", "Hold", "Rest")  # the token types of a voice's slot
VELOCITY = 80


class VoiceGrid(miditok.MusicTokenizer):
    """MidiTok's tokenizer interface over the voice grid (see the module's docstring)."""

    def _tweak_config_before_creating_voc(self) -> None:
        self.config.use_programs = True  # one stream (MidiTok's i/o format), the tracks kept apart on preprocess
        self.config.one_token_stream_for_programs = True
        self.config.use_velocities = False
        self.config.use_tempos = False
        self.config.use_rests = False
        self.config.use_chords = False
        self.config.additional_params.setdefault("voice_programs", [40, 41, 42, 43])
        self.config.additional_params.setdefault("ties", False)

    @property
    def ties(self) -> bool:
        """Whether a held note is restated with its pitch (`Tie_p`) rather than as `Hold_Voice`."""
        return bool(self.config.additional_params["ties"])

    @property
    def voice_programs(self) -> list[int]:
        return list(self.config.additional_params["voice_programs"])

    @property
    def voices(self) -> int:
        return len(self.voice_programs)

    def _create_base_vocabulary(self) -> list[str]:
        res = self.config.max_num_pos_per_beat
        positions = max(num for num, _ in self.time_signatures) * res
        return [
            "Bar_None",
            *(f"TimeSig_{num}/{den}" for num, den in self.time_signatures),
            *(f"Position_{p}" for p in range(positions)),
            *(f"Pitch_{p}" for p in range(*self.config.pitch_range)),
            *((f"Tie_{p}" for p in range(*self.config.pitch_range)) if self.ties else [HOLD]),
            REST,
        ]

    def _create_token_types_graph(self) -> dict[str, set[str]]:
        slot = {"Pitch", "Tie" if self.ties else "Hold", "Rest"}
        return {
            "Bar": {"TimeSig"},
            "TimeSig": {"Position", "Bar"},
            "Position": slot,
            **{kind: slot | {"Position", "Bar"} for kind in slot},
        }

    def _tokens_errors(self, tokens: list[str]) -> int:
        """Tokens out of place: a frame with more or fewer than one token per voice, a Position that does not
        move forward in its bar, a TimeSig anywhere but after Bar, a tie of a pitch its voice does not sound."""
        errors, slot, position, previous = 0, self.voices, -1, ""
        sounding: list[str | None] = [None] * self.voices
        for token in tokens:
            kind, _, value = token.partition("_")
            if kind == "Bar":
                ok, position = slot == self.voices, -1
            elif kind == "TimeSig":
                ok = previous == "Bar"
            elif kind == "Position":
                ok = slot == self.voices and previous != "Bar" and int(value) > position
                position, slot = int(value), 0
            elif kind in SLOT:
                ok = slot < self.voices and (kind != "Tie" or sounding[slot] == value)
                if ok and kind in ("Pitch", "Rest"):
                    sounding[slot] = value if kind == "Pitch" else None
                slot += 1
            else:
                ok = True  # special tokens
            errors += not ok
            previous = kind
        return errors

    def _add_time_events(self, events: list[miditok.Event], time_division: int) -> list[miditok.Event]:
        raise NotImplementedError("VoiceGrid writes its time in _score_to_tokens")

    def _score_to_tokens(self, score: Score, attribute_controls_indexes: object = None) -> miditok.TokSequence:
        """The grid of a preprocessed score (every track one voice)."""
        if len(score.tracks) != self.voices:
            raise ValueError(
                f"a voice grid of {self.voices} voices needs {self.voices} tracks; this has {len(score.tracks)}"
            )
        tracks = [score.tracks[i] for i in highest_first(list(score.tracks))]
        seq = miditok.TokSequence(tokens=self.frames(score, self.changes(dict(enumerate(tracks)))))
        self.complete_sequence(seq)
        return seq

    def frames(self, score: Score, events: dict[int, list[str | None]]) -> list[str]:
        """The tokens of `changes` in the bars of the preprocessed `score`: a voice that has not yet begun
        rests, one that does not change holds."""
        tokens: list[str] = []
        bars = BarLines(score, self.config.max_num_pos_per_beat)
        pitch: list[int | None] = [None] * self.voices  # each voice's sounding pitch
        begun = [False] * self.voices
        for tick in sorted(events):
            tokens += bars.up_to(tick)
            tokens.append(f"Position_{bars.position(tick)}")
            for v, change in enumerate(events[tick]):
                if change is not None:
                    pitch[v] = int(change.split("_")[1]) if change.startswith("Pitch") else None
                    tokens.append(change)
                elif self.ties:
                    tokens.append(REST if pitch[v] is None else f"Tie_{pitch[v]}")
                else:
                    tokens.append(HOLD if begun[v] else REST)
                begun[v] = True
        return tokens

    def changes(self, voices: dict[int, Track]) -> dict[int, list[str | None]]:
        """tick → each voice slot's token where some voice starts or stops a note there (None: as it was), for
        one-voice tracks of a preprocessed score by their slots (a note held into the next is cut there)."""
        events: dict[int, list[str | None]] = {}
        for v, track in voices.items():
            notes = sorted(track.notes, key=lambda n: (n.time, n.pitch))
            for i, note in enumerate(notes):
                following = notes[i + 1].time if i + 1 < len(notes) else None
                if following == note.time:
                    raise ValueError(
                        f"track {track.name or v} plays two notes at once: a voice grid needs one voice per track"
                    )
                events.setdefault(note.time, [None] * self.voices)[v] = f"Pitch_{note.pitch}"
                end = note.end if following is None else min(note.end, following)
                if end != following:
                    frame = events.setdefault(end, [None] * self.voices)
                    frame[v] = frame[v] or REST
        return events

    def _tokens_to_score(self, tokens: miditok.TokSequence | Sequence, programs: object = None) -> Score:
        """The score a grid writes: one track per voice, on the programs of `voice_programs`."""
        tokens = tokens.tokens if isinstance(tokens, miditok.TokSequence) else tokens
        if tokens and isinstance(tokens[0], list):
            tokens = tokens[0]
        res = self.config.max_num_pos_per_beat
        denominators = [den for _, den in self.time_signatures]
        tpq = res * max(max(denominators), 4) // 4
        score = Score(tpq)
        notes: list[list[list[int]]] = [[] for _ in range(self.voices)]  # per voice: [start, end, pitch]
        meter, bar_start, bar_length, tick, slot = TIME_SIGNATURE, None, 0, 0, self.voices
        for token in tokens:
            kind, _, value = token.partition("_")
            if kind == "Bar":
                bar_start = 0 if bar_start is None else bar_start + bar_length
                bar_length = tpq * 4 * meter[0] // meter[1]
            elif kind == "TimeSig" and bar_start is not None:
                num, den = (int(x) for x in value.split("/"))
                if (num, den) != meter or not score.time_signatures:
                    score.time_signatures.append(TimeSignature(bar_start, num, den))
                meter, bar_length = (num, den), tpq * 4 * num // den
            elif kind == "Position" and bar_start is not None:
                tick, slot = bar_start + int(value) * tpq * 4 // (res * meter[1]), 0
            elif kind in SLOT and slot < self.voices:
                if kind in ("Pitch", "Rest"):
                    _stop(notes[slot], tick)
                    if kind == "Pitch":
                        notes[slot].append([tick, -1, int(value)])
                slot += 1
        for voice in notes:  # a piece cut short: its last notes last a beat
            _stop(voice, tick + tpq)
        for slot, (program, voice) in enumerate(zip(self.voice_programs, notes, strict=True)):
            kept = [Note(start, end - start, pitch, VELOCITY) for start, end, pitch in voice if end > start]
            if kept:
                track = Track(name=f"voice {slot + 1}", program=program)
                track.notes.extend(kept)
                score.tracks.append(track)
        return score


def highest_first(tracks: list[Track]) -> list[int]:
    """The tracks' indices in the grid's order of voices: by mean pitch, highest first."""
    return sorted(range(len(tracks)), key=lambda i: -float(np.mean([n.pitch for n in tracks[i].notes])))


def _stop(voice: list[list[int]], tick: int) -> None:
    """End the voice's sounding note, if any, at `tick`."""
    if voice and voice[-1][1] < 0:
        voice[-1][1] = tick


class BarLines:
    """Bar lines of a preprocessed score, read in time order: the `Bar TimeSig` tokens up to a tick."""

    def __init__(self, score: Score, res: int):
        self.tpq, self.res = score.ticks_per_quarter, res
        self.meters = [(ts.time, ts.numerator, ts.denominator) for ts in score.time_signatures] or [
            (0, *TIME_SIGNATURE)
        ]
        self.start, self.length, self.meter, self.opened = 0, 0, TIME_SIGNATURE, False

    def up_to(self, tick: int) -> list[str]:
        out = []
        while not self.opened or tick >= self.start + self.length:
            self.start = self.start + self.length if self.opened else 0
            self.opened = True
            self.meter = next(((n, d) for t, n, d in reversed(self.meters) if t <= self.start), self.meter)
            self.length = self.tpq * 4 * self.meter[0] // self.meter[1]
            out += ["Bar_None", f"TimeSig_{self.meter[0]}/{self.meter[1]}"]
        return out

    def position(self, tick: int) -> int:
        return (tick - self.start) * self.res * self.meter[1] // (4 * self.tpq)
