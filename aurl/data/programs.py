"""The General MIDI program of each part of a score, which music21 writes as 0 where the score names none.

Voices go by pitch: the built-in corpora give them violin, viola, cello and contrabass from the top (as the
chorales' soprano, alto, tenor and bass), a user's score the voices of the run it is for. Instruments keep their
program. One token stream tells tracks apart by program, so a part whose program another part has takes a spare.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import symusic

Track = symusic.core.TrackTick

# One program per chorale voice, violin, viola, cello and contrabass from the top, so that voices stay
# separate tracks through tokenization. Other vocal polyphony and melodies follow it by voice order (their part
# names vary from Cantus to P1), so that a model pretrained on builtin:music21 sees a top line and a bass line
# the way the chorales show them.
VOICE_PROGRAMS = {"soprano": 40, "alto": 41, "tenor": 42, "bass": 43}
VOICES = tuple(VOICE_PROGRAMS.values())
# Two parts with one program merge into one track when tokenized as one stream, and General MIDI has no
# second violin or second tenor: a part whose program an earlier part has takes the first free one of these
# (string ensembles, voices, then winds, so that the sound stays close).
SPARE_PROGRAMS = (48, 49, 50, 51, 52, 53, 54, 44, 45, 68, 70, 71, 73, 56, 57, 60)


def for_voices(count: int, voices: Sequence[int] = VOICES) -> list[int]:
    """Programs for `count` voices from the highest down: `voices` in order, the lowest voice taking the last
    of them where there are several, spares for the inner voices beyond them; a lone voice takes the first."""
    spares = [p for p in SPARE_PROGRAMS if p not in voices]
    if count < 2 or len(voices) < 2:
        return [*voices, *spares][:count]
    return [*[*voices[:-1], *spares][: count - 1], voices[-1]]


def _mean_pitch(track: Track) -> float:
    return statistics.fmean(note.pitch for note in track.notes)


def by_voice(tracks: list[Track], voices: Sequence[int] = VOICES) -> None:
    """Programs by voice (for_voices), the voices ordered by mean pitch."""
    ordered = sorted(tracks, key=_mean_pitch, reverse=True)
    for track, program in zip(ordered, for_voices(len(ordered), voices), strict=True):
        track.program = program


def _instrument_program(name: str) -> int | None:
    """The program of the instrument music21 finds by a part's name ("Violino II.", "Klarinette"); None where
    it finds none ("MusicXML Part", "Gesang")."""
    from music21 import instrument

    try:
        return instrument.fromString(name).midiProgram
    except instrument.InstrumentException:
        return None


def distinct(tracks: list[Track]) -> None:
    """A track whose program a differently named track already has takes a spare; staves of one instrument
    (same name, same program: a piano's two hands) keep one."""
    taken, owner = {track.program for track in tracks}, {}
    for track in tracks:
        if owner.setdefault(track.program, track.name) != track.name:
            track.program = next(p for p in SPARE_PROGRAMS if p not in taken)
            taken.add(track.program)
            owner[track.program] = track.name


def by_instrument_name(tracks: list[Track]) -> None:
    """Each part's instrument found from its name, since the program music21 reads from several quartet scores
    is missing or wrong; else that program; then distinct."""
    for track in tracks:
        named = _instrument_program(track.name)
        track.program = track.program if named is None else named
    distinct(tracks)
