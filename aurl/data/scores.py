"""Scores in notation (MusicXML, MXL, ABC, Humdrum) as MIDI: the one converter, for the built-in corpora and a
user's files alike.

music21 reads the score; the converter repairs what music21's MIDI writer would fail on, plays repeats out as
that writer plays them, takes chord symbols out (it would write them as notes into a melody's track) and keeps
the score's bar lines in the MIDI file: music21 writes a pickup at time 0, shifting every bar line by it, and the
converter writes it as the end of a full first bar. Dynamic marks become the notes' velocities (music21's
writer plays them); chord symbols, lyrics and hairpins, which aurl's tokens do not hold, are counted as dropped.
"""

from __future__ import annotations

import bisect
import copy
import re
import statistics
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import symusic

from aurl.data.programs import VOICES, Track, distinct, for_voices

# What music21 reads, by preference when a piece is there in several formats (MusicXML has the instrument
# names; music21 ships some quartet movements as Humdrum too).
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn", ".abc")
CHORDS = "Chords"  # the track made from chord symbols
CHORDS_PROGRAM = 0  # piano: the usual accompaniment
CHORD_VELOCITY = 64  # below the tune's (music21 writes 90): an accompaniment


def is_score(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SCORE_SUFFIXES


def tune_numbers(path: Path) -> list[int]:
    """The X: numbers of the tunes of an ABC file, each once, in file order ([] for any other file)."""
    if path.suffix.lower() != ".abc":
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    return list(dict.fromkeys(int(n) for n in re.findall(r"^X:\s*(\d+)", text, flags=re.MULTILINE)))


def _unshare_time_signatures(score) -> None:
    """music21's ABC reader puts one TimeSignature object in several measures around a pickup, which its
    MIDI writer then refuses ("already found in this Stream"): give each measure its own copy."""
    from music21 import meter

    seen = set()
    for stream in score.recurse(streamsOnly=True):
        for sig in list(stream.getElementsByClass(meter.TimeSignature)):
            if id(sig) in seen:
                stream.replace(sig, copy.deepcopy(sig))
            seen.add(id(sig))


def _drop_broken_repeats(score) -> None:
    """Repeats music21 cannot follow (an unbalanced repeat bar, a stray ending) make its MIDI writer fail,
    since it plays repeats out: such a score is written as notated, once through."""
    from music21 import bar, repeat, spanner, stream

    if all(repeat.Expander(part).isExpandable() is not False for part in score.parts):
        return
    for measure in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = bar.Barline()
    for kind in (repeat.RepeatExpression, spanner.RepeatBracket):
        score.remove(list(score.recurse().getElementsByClass(kind)), recurse=True)


def _take_chords(score) -> list[tuple[float, float, list[int]]]:
    """Remove the chord symbols (the "Am" over a folk tune; a stray few in some MusicXML) from the score,
    which music21 would otherwise write as notes into a melody's track; returns each as (start, end, MIDI
    pitches) in quarter notes, lasting until the next symbol."""
    from music21 import harmony

    symbols = sorted(
        score.recurse().getElementsByClass(harmony.ChordSymbol), key=lambda s: s.getOffsetInHierarchy(score)
    )
    if not symbols:
        return []
    starts = [float(symbol.getOffsetInHierarchy(score)) for symbol in symbols]
    ends = [*starts[1:], float(score.highestTime)]
    chords = [
        (start, end, [p.midi for p in symbol.pitches])
        for symbol, start, end in zip(symbols, starts, ends, strict=True)
        if symbol.pitches and end > start  # "N.C." has no pitches: silence until the next symbol
    ]
    score.remove(symbols, recurse=True)
    return chords


def _mark_continuations(score) -> None:
    """A bar split in two by a repeat or a fermata is two short measures. music21 marks the second as the
    end of the bar (its paddingLeft, from which `beat` counts) when it reads MusicXML, not when it reads ABC or
    plays repeats out: mark each short measure that follows a short one and fits in the rest of its bar."""
    from music21 import stream

    for part in score.parts:
        filled, sig = 0, None  # how much of the bar the measures before have filled, while it is not full
        for measure in part.getElementsByClass(stream.Measure):
            sig = measure.timeSignature or sig
            if sig is None:
                continue
            bar = sig.barDuration.quarterLength
            if filled and not measure.paddingLeft and filled + measure.duration.quarterLength <= bar:
                measure.paddingLeft = filled
            end = measure.paddingLeft + measure.duration.quarterLength
            filled = end if end < bar else 0


def _notated(source: str, number: int | None):
    """The score as music21 reads it: a file (never a pickle music21 cached), or a work of its corpus by name."""
    from music21 import converter, corpus

    if Path(source).is_file():
        return converter.parseFile(source, number=number, forceSource=True)
    return corpus.parse(source, number=number, forceSource=True)


def _playable(score):
    """The score repaired where music21's MIDI writer would fail, repeats played out (as that writer plays
    them) and split bars marked, so that each note's `beat` is its beat in the MIDI file written from it."""
    with warnings.catch_warnings():  # music21 warns about every overfull measure it repairs
        warnings.simplefilter("ignore")
        _unshare_time_signatures(score)
        _drop_broken_repeats(score)
        score = score.expandRepeats()
        _mark_continuations(score)
    return score


def parse_score(source: str, number: int | None = None):
    """The piece (a file, or a work of music21's corpus by name; `number`: a tune of an ABC file of several)
    as the converter reads it (see _playable)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        notated = _notated(source, number)
    return _playable(notated)


def _pickup(score) -> float | None:
    """The part of the first bar that a pickup leaves out (0 without one), or None where music21 cannot say:
    a part without measures, parts that disagree."""
    from music21 import stream

    firsts = [part.getElementsByClass(stream.Measure).first() for part in score.parts]
    missing = {None if first is None else float(first.paddingLeft) for first in firsts}
    return missing.pop() if len(missing) == 1 else None


def _shifted(midi: symusic.Score, ticks: int) -> symusic.Score:
    """A copy with everything later by ticks but what music21 writes at time 0 (the first bar's time
    signature, key and tempo), without the time signatures that restate the one before: music21 writes the
    first one again where repeats play the pickup again, and there, mid-bar, it would start a bar."""
    out = midi.shift_time(ticks)
    for events in (out.tempos, out.time_signatures, out.key_signatures, out.markers):
        for event in events:
            if event.time == ticks:
                event.time = 0
    kept = []
    for sig in sorted(out.time_signatures, key=lambda sig: sig.time):
        if not kept or (sig.numerator, sig.denominator) != (kept[-1].numerator, kept[-1].denominator):
            kept.append(sig)
    out.time_signatures = kept
    return out


def _bars_match(midi: symusic.Score, score, missing: float) -> bool:
    """Whether each measure of the score (repeats played out), written `missing` quarters later, starts in a
    bar of the MIDI file where it starts in the score's bar (after its paddingLeft) and ends within that bar.
    Measures after the file's last event hold nothing of it."""
    from miditok.utils import get_bars_ticks
    from music21 import stream

    tpq, last = midi.ticks_per_quarter, midi.end()
    bars = get_bars_ticks(midi)
    for part in score.parts:
        for measure in part.getElementsByClass(stream.Measure):
            start = round((measure.offset + missing) * tpq)
            if start >= last:
                break
            bar = bisect.bisect_right(bars, start) - 1
            if start - bars[bar] != round(measure.paddingLeft * tpq):
                return False
            if bar + 1 < len(bars) and start + round(measure.duration.quarterLength * tpq) > bars[bar + 1]:
                return False
    return True


def _aligned(midi: symusic.Score, score) -> symusic.Score | None:
    """The MIDI file with the score's bar lines: a pickup written as the end of a full first bar (everything
    but the first bar's time signature, key and tempo later by the part it leaves out); None where music21
    cannot say where the bar lines are or the file's would not all be the score's."""
    missing = _pickup(score)
    if missing is None:
        return None
    aligned = _shifted(midi, round(missing * midi.ticks_per_quarter)) if missing else midi
    return aligned if _bars_match(aligned, score, missing) else None


@dataclass(frozen=True)
class Converted:
    midi: symusic.Score
    aligned: bool  # its bar lines are the score's (else music21's)
    dropped: Counter[str] = field(default_factory=Counter)  # what of it aurl's tokens do not hold ("lyrics": 12)


def to_midi(score, programs: Callable[[list[Track]], None], chords: bool = False) -> Converted:
    """A score (parse_score's) as MIDI, one track per part that has notes, each given its program by `programs`,
    and with `chords` a track of its chord symbols; with the score's bar lines where music21 can say where they
    are. A score without notes is a ValueError."""
    from music21 import midi as m21midi

    symbols = _take_chords(score)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        midi = symusic.Score.from_midi(m21midi.translate.music21ObjectToMidiFile(score).writestr())
    midi.tracks = [track for track in midi.tracks if track.notes]
    if not midi.tracks:
        raise ValueError("no notes")
    programs(list(midi.tracks))
    if chords and symbols:
        tpq = midi.ticks_per_quarter
        track = symusic.Track(name=CHORDS, program=CHORDS_PROGRAM)
        for start, end, pitches in symbols:
            for pitch in pitches:
                track.notes.append(symusic.Note(round(start * tpq), round((end - start) * tpq), pitch, CHORD_VELOCITY))
        midi.tracks.append(track)
    aligned = _aligned(midi, score)
    return Converted(midi if aligned is None else aligned, aligned is not None)


def _dropped(score) -> Counter[str]:
    """What of the notated score aurl's tokens do not hold: chord symbols, lyrics and hairpins (crescendo and
    diminuendo marks, which music21's MIDI writer does not play)."""
    from music21 import dynamics, harmony

    found = Counter(
        {
            "chord symbols": len(score.recurse().getElementsByClass(harmony.ChordSymbol)),
            "lyrics": sum(len(note.lyrics) for note in score.recurse().notes),
            "hairpins": len(score.recurse().getElementsByClass(dynamics.DynamicWedge)),
        }
    )
    return +found  # the kinds it has


def _part_programs(score, voices: Sequence[int]) -> None:
    """Each part keeps the program of its instrument (the score's, else the one music21 finds by the part's
    name); the voices, parts that name no instrument and singers (General MIDI has only "voice oohs"), take
    `voices` by pitch (aurl.data.programs.for_voices)."""
    from music21 import harmony, instrument

    def program(part) -> int | None:
        found = part.getInstrument(returnDefault=False, recurse=True)
        if found is None or found.midiProgram is None:
            try:
                found = instrument.fromString(part.partName or "")
            except instrument.InstrumentException:
                return None
        return None if isinstance(found, instrument.Vocalist) else found.midiProgram

    def mean_pitch(part) -> float:
        notes = part.recurse().notes.getElementsNotOfClass(harmony.Harmony)
        return statistics.fmean(p.midi for note in notes for p in note.pitches)

    parts = [(part, program(part)) for part in score.parts if _has_notes(part)]
    voiced = sorted((part for part, found in parts if found is None), key=mean_pitch, reverse=True)
    chosen = dict(zip(map(id, voiced), for_voices(len(voiced), voices), strict=True))
    for part, found in parts:
        instruments = list(part.recurse().getElementsByClass(instrument.Instrument))
        if not instruments:
            instruments = [instrument.Instrument()]
            part.insert(0, instruments[0])
        for each in instruments:  # music21 writes a program change for each
            if found is None or each.midiProgram is None:
                each.midiProgram = chosen[id(part)] if found is None else found


def _has_notes(stream) -> bool:
    from music21 import harmony

    return any(note.pitches for note in stream.recurse().notes.getElementsNotOfClass(harmony.Harmony))


def load_notation(
    path: str | Path, number: int | None = None, voices: Sequence[int] = VOICES
) -> tuple[Converted | None, str]:
    """(the score file as MIDI, "") where music21 can read it and it has notes, else (None, why not in words).
    `number`: a tune of an ABC file of several; `voices`: the programs of its voices (the run's, top first)."""
    if not Path(path).is_file():  # else music21 would look for a work of its corpus by that name
        return None, "no such file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notated = _notated(str(path), number)
    except Exception as err:  # music21 raises many types for a malformed file
        return None, f"not a score music21 can read: {_first_line(err)}; export it again from your notation program"
    if not hasattr(notated, "parts"):  # an Opus: an ABC file of several tunes read whole
        return None, f"holds {len(notated.scores)} tunes; save the one you mean in a file of its own"
    if not _has_notes(notated):
        return None, "no notes"
    dropped = _dropped(notated)
    try:
        score = _playable(notated)
        _part_programs(score, voices)
        converted = to_midi(score, distinct)
    except Exception as err:  # music21's writer fails on the odd malformed score
        return None, f"music21 cannot write it as MIDI: {_first_line(err)}"
    return replace(converted, dropped=dropped), ""


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:160]}"
