"""`--control` requests: which attribute controls to force, for which track and bars, as token ids.

A request is a few `key=value` words: a scope (`track=N`, 0-based as in the file; `bars=A-B` or
`bars=A`, 1-based, inclusive) and controls. Without `bars` a control is track-level (the whole track),
with it bar-level (each of those bars). The controls and their values:

    density=N or A-B       notes per bar (a track: fewest-most over its bars)
    polyphony=N or A-B     notes starting together (fewest-most)
    pitch_class=C,E,G      pitch classes present in the bar (names or numbers 0-11)
    duration=quarter,half  note values present (whole, half, quarter, eighth, sixteenth)
    repetition=0.5         how much consecutive bars repeat (0-1, a track)

Each becomes the token ids MidiTok's own control would have written for music with that attribute, in
the order training saw them (aurl.data.controls.CONTROLS). The requests work for any run trained with
controls: MMM, or REMI with programs, where `steering` turns them into what plan_of forces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import miditok
import numpy as np

from aurl.data.controls import CONTROLS, controls_of, ordered
from aurl.data.layout import Controls
from aurl.errors import RequestError

PITCH_NAMES = {"c": 0, "c#": 1, "db": 1, "d": 2, "d#": 3, "eb": 3, "e": 4, "f": 5, "f#": 6, "gb": 6, "g": 7}
PITCH_NAMES |= {"g#": 8, "ab": 8, "a": 9, "a#": 10, "bb": 10, "b": 11}
DURATIONS = ("whole", "half", "quarter", "eighth", "sixteenth")
MIDITOK_DURATIONS = ("Whole", "Half", "Quarter", "Eight", "Sixteenth")  # MidiTok's spelling
SHORT_NAMES = sorted({short for _, _, short in CONTROLS.values()})


@dataclass
class ControlRequest:
    track: int | None = None
    bars: tuple[int, int] | None = None  # 1-based, inclusive
    tokens: dict[str, list[int]] = field(default_factory=dict)  # control name → its token ids

    def covers(self, track: int, bar: int | None) -> bool:
        """Whether this request applies to `track` and (1-based) `bar` (None: the track as a whole)."""
        if self.track is not None and self.track != track:
            return False
        if bar is None:
            return self.bars is None
        return self.bars is not None and self.bars[0] <= bar <= self.bars[1]


def parse_controls(specs: list[list[str] | str], tokenizer: miditok.MusicTokenizer) -> list[ControlRequest]:
    """One request per --control; a bad name or value is a ConfigError that lists the allowed ones."""
    trained = controls_of(tokenizer)
    return [_parse(spec.split() if isinstance(spec, str) else list(spec), tokenizer, trained) for spec in specs]


def steering(requests: list[ControlRequest], tracks: dict[int, int]) -> Controls:
    """plan_of's `controls` for these requests: the control ids that steer a written program in a song bar
    (0-based; None: the track as a whole), in training's order. `tracks`: each written program → the track
    number the requests name it by. Where two requests set one control, the later one holds."""

    def controls(bar: int | None, program: int) -> list[int]:
        chosen: dict[str, list[int]] = {}
        for request in requests:
            if request.covers(tracks[program], None if bar is None else bar + 1):
                chosen.update(request.tokens)
        return ordered(chosen)

    return controls


def _parse(words: list[str], tokenizer: miditok.MusicTokenizer, trained: dict) -> ControlRequest:
    text = " ".join(words)
    request = ControlRequest()
    values = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not value:
            raise RequestError("controls", f" {text!r}: expected key=value words, e.g. track=1 density=6")
        if key == "track":
            request.track = _integer(value, text, "track", 0)
        elif key == "bars":
            first, _, last = value.partition("-")
            request.bars = (_integer(first, text, "bars", 1), _integer(last or first, text, "bars", 1))
            if request.bars[0] > request.bars[1]:
                raise RequestError("controls", f" {text!r}: bars={value} runs backwards; write bars=A-B with A <= B")
        elif key in SHORT_NAMES:
            values[key] = value
        else:
            raise RequestError(
                "controls", f" {text!r}: unknown key {key!r}; allowed: track, bars, {', '.join(SHORT_NAMES)}"
            )
    if not values:
        raise RequestError("controls", f" {text!r}: names no control; add one of {', '.join(SHORT_NAMES)}")
    level = "bar" if request.bars is not None else "track"
    for short, value in values.items():
        name = f"{level}_{short}"
        if name not in trained:
            names = sorted(f"{n.split('_', 1)[1]} ({n.split('_', 1)[0]})" for n in trained) or ["none"]
            raise RequestError(
                "controls",
                f" {text!r}: this run has no {short} control for a {level}"
                f"{' (give bars=A-B for bar-level ones)' if level == 'track' else ' (drop bars= for track-level ones)'}"
                f"; it was trained with: {', '.join(names)}",
            )
        request.tokens[name] = [tokenizer.vocab[t] for t in _tokens(name, trained[name], value, text)]
    return request


def _integer(value: str, text: str, key: str, least: int) -> int:
    if not value.isdigit() or int(value) < least:
        raise RequestError("controls", f" {text!r}: {key} must be a whole number >= {least}, got {value!r}")
    return int(value)


def _range(value: str, text: str, short: str, low: int, high: int) -> tuple[int, int]:
    first, _, last = value.partition("-")
    if not (first.isdigit() and (last or first).isdigit()) or int(first) > int(last or first):
        raise RequestError("controls", f" {text!r}: {short}={value} must be N or A-B with A <= B")
    a, b = int(first), int(last or first)
    if a < low or b > high:
        raise RequestError("controls", f" {text!r}: {short}={value} is outside {low}-{high}, the values this run knows")
    return a, b


def _tokens(name: str, control, value: str, text: str) -> list[str]:
    """The token strings MidiTok's `control` writes for music whose attribute is `value`."""
    if name in ("bar_polyphony", "track_polyphony"):
        a, b = _range(value, text, "polyphony", control.min_polyphony, control.max_polyphony)
        kind = "ACBarOnsetPolyphony" if name.startswith("bar") else "ACTrackOnsetPolyphony"
        return [f"{kind}Min_{a}", f"{kind}Max_{b}"]
    if name == "bar_density":
        a, _ = _range(value, text, "density", 0, 10**6)
        return [f"ACBarNoteDensity_{a if a < control.density_max else f'{control.density_max}+'}"]
    if name == "track_density":
        a, b = _range(value, text, "density", control.density_min, 10**6)
        top = control.density_max

        def bin_(v: int) -> str:
            return str(v) if v < top else f"{top}+"

        return [f"ACTrackNoteDensityMin_{bin_(a)}", f"ACTrackNoteDensityMax_{bin_(b)}"]
    if name == "bar_pitch_class":
        classes = sorted({_pitch_class(p, text) for p in value.split(",")})
        return [f"ACBarPitchClass_{c}" for c in classes]
    if name in ("bar_duration", "track_duration"):
        wanted = {d.strip().lower() for d in value.split(",")}
        unknown = wanted - set(DURATIONS)
        if unknown:
            raise RequestError(
                "controls", f" {text!r}: duration {', '.join(sorted(unknown))} unknown; allowed: {', '.join(DURATIONS)}"
            )
        kind = "ACBarNoteDuration" if name.startswith("bar") else "ACTrackNoteDuration"
        return [f"{kind}{m}_{int(d in wanted)}" for d, m in zip(DURATIONS, MIDITOK_DURATIONS, strict=True)]
    # track_repetition: the nearest of MidiTok's bins
    try:
        level = float(value)
    except ValueError:
        level = -1.0
    if not 0 <= level <= 1:
        raise RequestError("controls", f" {text!r}: repetition={value} must be a number from 0 to 1")
    bins = control._bins
    return [f"ACTrackRepetition_{bins[int(np.abs(bins - level).argmin())]:.2f}"]


def _pitch_class(word: str, text: str) -> int:
    word = word.strip().lower()
    if word.isdigit() and int(word) < 12:
        return int(word)
    if word in PITCH_NAMES:
        return PITCH_NAMES[word]
    raise RequestError("controls", f" {text!r}: pitch class {word!r} unknown; use 0-11 or names such as C, F#, Bb")
