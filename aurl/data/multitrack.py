"""Multitrack (MMM) token sequences: their tracks and bars, attribute controls, and decoding checks.

MidiTok's MMM tokenizes each track on its own, `Track_Start Program_p Bar TimeSig ... Track_End` (REMI
inside), and concatenates the tracks, so a model writes one track with the others in view. aurl adds
three special tokens for bar infilling (MMM's scheme): `Infill_Bar` stands where a bar was taken out,
and each taken bar is written after the last track as `Infill_Start Bar ... Infill_End`.

Attribute controls are MidiTok's (aurl.data.controls), computed on the notes they describe. aurl
places them itself, in one fixed place each: track-level ones right after the track's Program
token, bar-level ones right after the bar's Bar token. They say something about what follows and play
no part in the music, so decoding ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass

import miditok
import numpy as np

from aurl.data import controls
from aurl.data.controls import CONTROLS as CONTROLS  # where MMM's users have found it

INFILL_TOKENS = ("Infill_Bar", "Infill_Start", "Infill_End")


def is_multitrack(tokenizer: miditok.MusicTokenizer) -> bool:
    return isinstance(tokenizer, miditok.MMM)


@dataclass
class Track:
    """One track of a multitrack sequence: its header (Track_Start, Program, track-level controls) and
    its bars, each from its Bar token up to the next bar (bar-level controls included)."""

    header: np.ndarray
    bars: list[np.ndarray]

    def ids(self, end: int) -> list[int]:
        return [*self.header.tolist(), *(int(t) for bar in self.bars for t in bar), end]


class Multitrack:
    """Token ids of a multitrack tokenizer's structure, and the controls it was built with."""

    def __init__(self, tokenizer: miditok.MusicTokenizer):
        vocab = tokenizer.vocab
        self.tokenizer = tokenizer
        self.track_start, self.track_end = vocab["Track_Start"], vocab["Track_End"]
        self.bar = vocab["Bar_None"]
        self.infill_bar, self.infill_start, self.infill_end = (vocab[t] for t in INFILL_TOKENS)
        self.bos, self.eos, self.pad = vocab["BOS_None"], vocab["EOS_None"], tokenizer.pad_token_id
        self.program = {int(t.split("_")[1]): i for t, i in vocab.items() if t.startswith("Program_")}
        self.programs = set(self.program.values())
        self.is_control = controls.is_control(tokenizer)
        self.controls = controls.controls_of(tokenizer)

    def tracks(self, ids: np.ndarray) -> list[Track]:
        """The tracks of a piece's ids (Track_Start ... Track_End, repeated)."""
        ends = np.flatnonzero(ids == self.track_end)
        out = []
        for start in np.flatnonzero(ids == self.track_start).tolist():
            later = ends[ends > start]
            body = ids[start : int(later[0]) if len(later) else len(ids)]  # an unfinished track runs to the end
            bar_at = np.flatnonzero(body == self.bar).tolist()
            first = bar_at[0] if bar_at else len(body)
            bounds = zip(bar_at, [*bar_at[1:], len(body)][: len(bar_at)], strict=True)
            out.append(Track(body[:first], [body[a:b] for a, b in bounds]))
        return out

    def measure(self, track: Track, names: list[str]) -> tuple[dict[str, list[int]], dict[str, dict[int, list[int]]]]:
        """MidiTok's attribute controls `names` of one track's notes, as token ids (aurl.data.controls.measure)."""
        return controls.measure(self.tokenizer, [t for t in track.ids(self.track_end) if not self.is_control[t]], names)

    def errors(self, ids: list[int]) -> int:
        """Tokens MidiTok could not place in the music: each track's notes checked by the base
        tokenization's own rules (controls aside), plus every token out of MMM's structure (outside a
        track, a track that does not open with Program then Bar, a Program inside a track)."""
        ids = np.asarray(ids, dtype=np.int64)
        inside = np.cumsum(ids == self.track_start) - np.cumsum(np.r_[0, ids[:-1] == self.track_end]) > 0
        errors = int((~inside).sum())
        for track in self.tracks(ids):
            errors += len(track.header) < 2 or int(track.header[1]) not in self.programs
            errors += int(np.isin(track.header[2:], list(self.programs)).sum())  # header: controls only
            body = [int(t) for bar in track.bars for t in bar if not self.is_control[t]]
            errors += int(np.isin(body, list(self.programs)).sum())
            if body:
                errors += self.tokenizer.base_tokenizer._tokens_errors([self.tokenizer[t] for t in body])
        return errors
