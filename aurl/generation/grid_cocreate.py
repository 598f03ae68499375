"""Co-creation on the voice grid (aurl.data.grid): a song's given tracks become given voices of the grid, forced
in their slots at every change (aurl.generation.grid_grammar), and the model writes the other voices frame by
frame, each frame reading the given voices at that onset before its own. It accompanies (the kept tracks given
throughout) and rewrites bars of a voice (the bars before them the prompt, the other voices given in them; the
bars after them are not read, as the grid trains on plain windows).

A grid run writes its `tokenizer.voice_programs` voices, highest first. The kept tracks take the voices whose
programs they have where they all have one (a chorale's own parts), else the top voices in the order of their
mean pitch (a melody: the soprano); the added programs are the other voices, top down. The result is the song
with its kept tracks untouched and the written voices added on the added programs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import symusic

from aurl.data.grid import BarLines, VoiceGrid, highest_first
from aurl.errors import DataError, RequestError
from aurl.generation.grid_grammar import GridGiven
from aurl.generation.session import (
    CoCreation,
    Session,
    around,
    check_add,
    check_bars,
    check_keep,
    check_track,
    describe,
    song_score,
    span_ticks,
    spliced,
    whole,
)
from aurl.generation.takes import Take


def slots_of(tokenizer: VoiceGrid, tracks: list[symusic.Track]) -> list[int]:
    """The voice slot each kept track takes (see the module's docstring)."""
    programs = tokenizer.voice_programs
    own = [t.program for t in tracks]
    if all(p in programs for p in own) and len(set(own)) == len(own):
        return [programs.index(p) for p in own]
    slots = [0] * len(tracks)
    for slot, i in enumerate(highest_first(tracks)):
        slots[i] = slot
    return slots


@dataclass
class GridSong:
    """A song's tracks on their voice slots of the grid: their changes in time, and bar by bar."""

    preprocessed: symusic.Score  # as the run's tokenizer preprocesses it
    events: dict[int, list[str | None]]  # tick → each slot's change there (VoiceGrid.changes)
    meters: list[int]  # per bar, its TimeSig id
    changes: list[dict[int, list[str | None]]]  # per bar: Position → each slot's change there (None: none)

    @property
    def bars(self) -> int:
        return len(self.meters)

    def plan(self, tokenizer: VoiceGrid, given: list[int], span: range) -> GridGiven:
        """What a request writing the other slots in the bars of `span` is given: the `given` slots' changes."""
        vocab = tokenizer.vocab
        changes = []
        for bar in span:
            frames = self.changes[bar].items()
            found = {p: {v: vocab[frame[v]] for v in given if frame[v] is not None} for p, frame in frames}
            changes.append({p: tokens for p, tokens in found.items() if tokens})
        meters = [self.meters[b] for b in span]
        return GridGiven(meters, changes, sorted(given), tokenizer.voices, goes_on=span.stop < self.bars)

    def head(self, tokenizer: VoiceGrid, bar: int, room: int) -> tuple[list[int], int]:
        """(the ids of the song's bars before `bar`, at most `room` of them but whole bars, the bar they start at)."""
        tokens = tokenizer.frames(self.preprocessed, self.events)  # the whole song as the grid writes it
        opens = [k for k, token in enumerate(tokens) if token == "Bar_None"] + [len(tokens)]
        first = next(b for b in range(bar + 1) if opens[bar] - opens[b] <= room)
        return [tokenizer.vocab[t] for t in tokens[opens[first] : opens[bar]]], first


def read_grid_song(tokenizer: VoiceGrid, score: symusic.Score, slots: list[int]) -> GridSong:
    """`score`'s tracks on `slots` of the grid (each read as one voice: its top line)."""
    pre = tokenizer.preprocess_score(score)
    if len(pre.tracks) != len(score.tracks):
        raise DataError("song: a track has no notes in the run's pitch range; keep another or widen it")
    events = tokenizer.changes({slot: _top_line(track) for slot, track in zip(slots, pre.tracks, strict=True)})
    meters: list[int] = []
    changes: list[dict[int, list[str | None]]] = []
    bars = BarLines(pre, tokenizer.config.max_num_pos_per_beat)
    for tick in sorted(events):
        for token in bars.up_to(tick)[1::2]:  # each bar's TimeSig
            if token not in tokenizer.vocab:
                raise RequestError("song", f": its meter {token.split('_')[1]} is not one this run writes")
            meters.append(tokenizer.vocab[token])
            changes.append({})
        changes[-1][bars.position(tick)] = events[tick]
    return GridSong(pre, events, meters, changes)


def _top_line(track: symusic.Track) -> symusic.Track:
    """The track's highest note at each onset: what a voice of the grid reads of a song's track that plays chords
    now and then (a melody's double stop). The song's own track is what the result keeps."""
    top = {}
    for note in track.notes:
        if note.time not in top or note.pitch > top[note.time].pitch:
            top[note.time] = note
    line = track.copy()
    line.notes = symusic.core.NoteTickList(sorted(top.values(), key=lambda n: n.time))
    return line


def _no_controls(controls: list[str]) -> None:
    if controls:
        raise RequestError("controls", ": a voice grid run has no attribute controls; leave them out")


def accompany_on_grid(
    session: Session, song: str | Path, add: list[int], keep: list[int] | None, controls: list[str]
) -> CoCreation:
    """Keep tracks of the song as given voices of the grid and write the others on the programs of `add`."""
    _no_controls(controls)
    tokenizer: VoiceGrid = session.tokenizer
    score = song_score(song, session.voices)
    keep = check_keep(keep, len(score.tracks), song, describe(score))
    check_add(add, range(-1, 128))
    if len(keep) + len(add) != tokenizer.voices:
        raise RequestError(
            "add",
            f": a voice grid run writes {tokenizer.voices} voices; "
            f"with {len(keep)} kept, add {tokenizer.voices - len(keep)}",
        )
    kept = score.copy()
    kept.tracks = [score.tracks[k].copy() for k in keep]
    slots = slots_of(tokenizer, list(kept.tracks))
    the_song = read_grid_song(tokenizer, kept, slots)
    given = the_song.plan(tokenizer, slots, range(the_song.bars))
    written = [s for s in range(tokenizer.voices) if s not in slots]
    prompt = [tokenizer["BOS_None"]]

    def takes() -> list[Take]:
        out = []
        budget = session.settings.max_tokens * len(add) + given.forced
        for row in session.write([prompt] * session.settings.num, [given], budget):
            result = score.copy()
            result.tracks = [*kept.tracks, *_voices(tokenizer, row, written, add, score)]
            out.append(session.take(result, row, whole(range(len(keep)), result)))
        return out

    return CoCreation(session, takes)


def infill_on_grid(
    session: Session, song: str | Path, bars: tuple[int, int], track: int | None, controls: list[str]
) -> CoCreation:
    """Rewrite bars of one voice (or of all) of a song in the grid's voices: the bars before them are the prompt,
    the other voices in them are forced in their slots. The bars after them are not read: the grid model
    trained on plain windows only."""
    _no_controls(controls)
    tokenizer: VoiceGrid = session.tokenizer
    score = song_score(song, session.voices)
    if len(score.tracks) != tokenizer.voices:
        raise RequestError(
            "song",
            f": a voice grid run rewrites songs in its {tokenizer.voices} voices; {song} has {len(score.tracks)} "
            f"tracks ({describe(score)})",
        )
    targets = check_track(track, len(score.tracks), song, describe(score))
    slots = slots_of(tokenizer, list(score.tracks))
    the_song = read_grid_song(tokenizer, score, slots)
    check_bars(bars, the_song.bars, song)
    first, last = bars
    written = [slots[t] for t in targets]
    given = the_song.plan(tokenizer, [s for s in slots if s not in written], range(first - 1, last))
    head, opened = the_song.head(tokenizer, first - 1, session.room)
    prompt = [tokenizer["BOS_None"], *head]
    start, stop = span_ticks(score, first, last)
    offset = span_ticks(score, opened + 1, opened + 1)[0]

    programs = [score.tracks[t].program for t in targets]

    def takes() -> list[Take]:
        out = []
        budget = session.settings.max_tokens * len(targets) + given.forced
        for row in session.write([prompt] * session.settings.num, [given], budget):
            new = _voices(tokenizer, [*head, *row], written, programs, score, offset)
            result = spliced(score, targets, new, start, stop)
            out.append(session.take(result, [*head, *row], around(result, targets, start, stop)))
        return out

    return CoCreation(session, takes)


def _voices(
    tokenizer: VoiceGrid, row: list[int], slots: list[int], programs: list[int], song: symusic.Score, offset: int = 0
) -> list[symusic.Track]:
    """The voices of `slots` in a written grid that starts `offset` ticks into the song, as tracks on `programs`
    at the song's resolution, none sounding past its end."""
    decoded = tokenizer.decode(row).resample(song.ticks_per_quarter, min_dur=1)
    found = {t.program: t for t in decoded.tracks}
    end = song.end()
    out = []
    for slot, program in zip(slots, programs, strict=True):
        track = symusic.Track(program=max(program, 0), is_drum=program < 0)
        voice = found.get(tokenizer.voice_programs[slot])
        if voice is not None:
            track.notes.extend(
                symusic.Note(n.time + offset, max(1, min(n.duration, end - n.time - offset)), n.pitch, n.velocity)
                for n in voice.notes
                if n.time + offset < end
            )
        out.append(track)
    return out
