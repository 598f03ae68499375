"""MidiTok's attribute controls as aurl names them, and their token ids for given notes.

A control says something about the notes it describes (how many per bar, which pitch classes, which note
values, ...). MidiTok's own classes (`miditok.attribute_controls`) compute it from the notes; the model reads
it before those notes, so that a request can ask for it. Where a control sits in the stream is the
tokenization's business (aurl.data.multitrack for MMM, aurl.data.layout for REMI with programs): this module
only says which controls a tokenizer has and what their tokens are for some notes.

MidiTok builds controls for per-track tokenizations only: it switches them off for one stream of programs.
For REMI with programs aurl adds them itself. Their names are kept in the tokenizer's config
(`additional_params["aurl_controls"]`, saved in tokenizer.json with the rest of it), and `attach` adds the
same MidiTok objects and tokens, in the same order, whenever such a tokenizer is built or loaded, so that
the vocabulary and its hash come out the same each time.
"""

from __future__ import annotations

import miditok
import numpy as np
from miditok import attribute_controls as ac
from miditok.utils import get_bars_ticks, get_beats_ticks

# aurl's name of each control: (MidiTok config flag, MidiTok class, short name for --control). This order is
# the order of a position's controls in every layout, in training and in requests alike.
CONTROLS: dict[str, tuple[str, type[ac.AttributeControl], str]] = {
    "bar_density": ("ac_note_density_bar", ac.BarNoteDensity, "density"),
    "bar_polyphony": ("ac_polyphony_bar", ac.BarOnsetPolyphony, "polyphony"),
    "bar_pitch_class": ("ac_pitch_class_bar", ac.BarPitchClass, "pitch_class"),
    "bar_duration": ("ac_note_duration_bar", ac.BarNoteDuration, "duration"),
    "track_density": ("ac_note_density_track", ac.TrackNoteDensity, "density"),
    "track_polyphony": ("ac_polyphony_track", ac.TrackOnsetPolyphony, "polyphony"),
    "track_duration": ("ac_note_duration_track", ac.TrackNoteDuration, "duration"),
    "track_repetition": ("ac_repetition_track", ac.TrackRepetition, "repetition"),
}
SAVED = "aurl_controls"  # the key of additional_params that names the controls aurl attaches
PREFIX = "AC"  # every control token's type starts with it (MidiTok's naming)


def attach(tokenizer: miditok.MusicTokenizer) -> None:
    """Add the controls named in the tokenizer's config (see the module's docstring); none: nothing to do."""
    cfg = tokenizer.config
    names = cfg.additional_params.get(SAVED) or []
    for name in (n for n in CONTROLS if n in names):
        tokenizer.add_attribute_control(_built(name, cfg))


def _built(name: str, cfg: miditok.TokenizerConfig) -> ac.AttributeControl:
    """A control with the parameters MidiTok's own tokenizers give it (MusicTokenizer's
    _initialize_attribute_controls), read from the same config fields."""
    cls = CONTROLS[name][1]
    if name in ("bar_polyphony", "track_polyphony"):
        return cls(cfg.ac_polyphony_min, cfg.ac_polyphony_max)
    if name == "track_density":
        return cls(cfg.ac_note_density_track_min, cfg.ac_note_density_track_max)
    if name == "bar_density":
        return cls(cfg.ac_note_density_bar_max)
    if name == "track_repetition":
        return cls(cfg.ac_repetition_track_num_bins, cfg.ac_repetition_track_num_consec_bars, cfg.pitch_range)
    return cls()


def controls_of(tokenizer: miditok.MusicTokenizer) -> dict[str, ac.AttributeControl]:
    """aurl's name → the tokenizer's control object, in the tokenizer's own order."""
    return {name: c for c in tokenizer.attribute_controls for name in _names_of(c)}


def _names_of(control: ac.AttributeControl) -> list[str]:
    return [name for name, (_, cls, _) in CONTROLS.items() if type(control) is cls]


def is_control(tokenizer: miditok.MusicTokenizer) -> np.ndarray:
    """(len(tokenizer),) bool: which ids are control tokens."""
    out = np.zeros(len(tokenizer), dtype=bool)
    out[[i for t, i in tokenizer.vocab.items() if t.startswith(PREFIX)]] = True
    return out


def ordered(chosen: dict[str, list[int]]) -> list[int]:
    """The token ids of some controls (name → ids) in CONTROLS' order: one position's controls."""
    return [t for name in CONTROLS if name in chosen for t in chosen[name]]


def measure(
    tokenizer: miditok.MusicTokenizer, ids: list[int], names: list[str]
) -> tuple[dict[str, list[int]], dict[str, dict[int, list[int]]]]:
    """MidiTok's attribute controls `names` of the notes of `ids`, a stream that decodes into one track
    (without controls), as token ids: ({track-level name: ids}, {bar-level name: {bar index: ids}}), bar
    indices counted from the stream's first Bar. Bars without notes get no bar-level control (as in
    MidiTok)."""
    score = tokenizer.decode(ids)
    if not score.tracks or not len(score.tracks[0].notes):
        return {}, {}
    controls = controls_of(tokenizer)
    bars = get_bars_ticks(score, only_notes_onsets=True)
    beats = get_beats_ticks(score, only_notes_onsets=True)
    bar_index = {tick: i for i, tick in enumerate(bars)}
    whole: dict[str, list[int]] = {}
    per_bar: dict[str, dict[int, list[int]]] = {}
    for name in names:
        control = controls[name]
        events = control.compute(score.tracks[0], score.ticks_per_quarter, bars, beats, list(range(len(bars))))
        for event in events:
            token = tokenizer.vocab[f"{event.type_}_{event.value}"]
            if isinstance(control, ac.BarAttributeControl):
                per_bar.setdefault(name, {}).setdefault(bar_index[event.time], []).append(token)
            else:
                whole.setdefault(name, []).append(token)
    return whole, per_bar
