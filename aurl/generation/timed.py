"""Co-creation in the one time-ordered stream (REMI with programs): accompany a song's kept tracks with new
ones, and rewrite bars of its tracks with both sides in view, laid out as the run trained (aurl.data.layout):
the task token after BOS, the given notes forced at their onsets (aurl.generation.given), an infill reading the
bars before its gap and then a block of the bars after it. A request's takes are then revised a bar at a time
for settings.sweeps sweeps (aurl.generation.sweeps)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import miditok
import symusic

from aurl.data.controls import controls_of
from aurl.data.layout import Bar, Controls, Layout
from aurl.data.prepare import tokenize_score
from aurl.data.programs import VOICES
from aurl.errors import RequestError
from aurl.generation.controls import parse_controls, steering
from aurl.generation.generate import tokens_to_score
from aurl.generation.given import plan_of
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
from aurl.generation.sweeps import revise
from aurl.generation.takes import Take


@dataclass
class TimedSong:
    """A user's file in the time-ordered stream: its tracks with notes, and every track's notes in bars."""

    path: Path
    score: symusic.Score
    bars: list[Bar]

    def programs(self, tracks: list[int]) -> list[int]:
        return [-1 if self.score.tracks[i].is_drum else self.score.tracks[i].program for i in tracks]

    def bars_of(self, tracks: list[int], tokenizer: miditok.MusicTokenizer, layout: Layout) -> list[Bar]:
        """Only these tracks' notes, in the song's bars (each with its time signature)."""
        alone = self.score.copy()
        alone.tracks = [self.score.tracks[i].copy() for i in tracks]
        bars = layout.bars(tokenize_score(tokenizer, alone)) if tracks else []
        return bars + [Bar(bar.head, []) for bar in self.bars[len(bars) :]]

    def describe(self) -> str:
        return describe(self.score)


def read_timed_song(
    path: str | Path, tokenizer: miditok.MusicTokenizer, layout: Layout, voices: Sequence[int] = VOICES
) -> TimedSong:
    score = song_score(path, voices)
    return timed_song(path, score, tokenizer, layout)


def timed_song(path: str | Path, score: symusic.Score, tokenizer: miditok.MusicTokenizer, layout: Layout) -> TimedSong:
    return TimedSong(Path(path), score, layout.bars(tokenize_score(tokenizer, score)))


def _steering(session: Session, controls: list[str], tracks: dict[int, int], song: str | Path, bars: int) -> Controls:
    """What --control requests force for the written programs (`tracks`: program → its track number in the
    result, as the requests count them), checked: each names a written track and bars of the song."""
    if controls and not controls_of(session.tokenizer):
        raise RequestError("controls", ": attribute controls need a run trained with them (tokenizer.controls)")
    requests = parse_controls(controls, session.tokenizer)
    written = sorted(tracks.values())
    for request in requests:
        if request.track is not None and request.track not in written:
            raise RequestError(
                "controls",
                f" track={request.track}: not a track being written; those are {', '.join(map(str, written))}",
            )
        if request.bars is not None and request.bars[1] > bars:
            raise RequestError("controls", f" bars={request.bars[0]}-{request.bars[1]}: {song} has {bars} bars")
    return steering(requests, tracks)


def _written_tracks(
    session: Session, stream: list[int], song: symusic.Score, programs: list[int], offset: int = 0
) -> list[symusic.Track]:
    """The tracks of `programs` in a decoded stream (BOS dropped) that starts `offset` ticks into the song, at
    the song's resolution, in that order, none sounding past the song's end."""
    played = session.layout.played(stream)
    score = tokens_to_score(session.tokenizer, played)[0].resample(song.ticks_per_quarter, min_dur=1)
    found = {-1 if t.is_drum else t.program: t for t in score.tracks}
    tracks = [found.get(p, symusic.Track(program=max(p, 0), is_drum=p < 0)) for p in programs]
    end = song.end()
    for track in tracks:
        for note in track.notes:
            note.time += offset
            note.duration = max(1, min(note.duration, end - note.time))
    return tracks


def accompany_in_time(
    session: Session, song: str | Path, add: list[int], keep: list[int] | None, controls: list[str]
) -> CoCreation:
    """Keep tracks of the song and write new ones in the one stream, the kept notes forced at their onsets."""
    tokenizer, layout = session.tokenizer, session.layout
    the_song = read_timed_song(song, tokenizer, layout, session.voices)
    keep = check_keep(keep, len(the_song.score.tracks), song, the_song.describe())
    check_add(add, session.grammar.program_id)
    kept = the_song.programs(keep)
    for n, program in enumerate(add):
        if program in kept or program in add[:n]:
            raise RequestError(
                "add",
                f" {program}: a kept or added track already plays it, and one stream tells tracks apart by "
                "program; choose another",
            )
    bars = the_song.bars_of(keep, tokenizer, layout)
    tracks = {program: len(keep) + n for n, program in enumerate(add)}
    steer = _steering(session, controls, tracks, song, len(bars))
    everything = range(len(bars))
    given = plan_of(layout, bars, everything, lambda bar, program: True, add, steer)
    prompt = [tokenizer["BOS_None"], *layout.head("accompany", bars, everything, lambda bar, program: True).ids]

    def takes() -> list[Take]:
        out = []
        budget = session.settings.max_tokens * len(add) + given.forced  # max_tokens for each new track
        for row in session.write([prompt] * session.settings.num, [given], budget):
            score = the_song.score.copy()
            written = _written_tracks(session, [*prompt[1:], *row], the_song.score, add)
            score.tracks = [the_song.score.tracks[k].copy() for k in keep] + written
            out.append(session.take(score, [*prompt[1:], *row], whole(range(len(keep)), score)))
        return revise(session, out, list(tracks.values()), (1, len(bars)), _reviser(session, the_song.path, steer))

    return CoCreation(session, takes)


def infill_in_time(
    session: Session, song: str | Path, bars: tuple[int, int], track: int | None, controls: list[str]
) -> CoCreation:
    """Rewrite bars of one track (or of all) in the one stream: the bars before them and the block of those
    after them are the prompt, the other tracks' notes in them are forced at their onsets."""
    tokenizer, layout = session.tokenizer, session.layout
    the_song = read_timed_song(song, tokenizer, layout, session.voices)
    tracks = len(the_song.score.tracks)
    check_bars(bars, len(the_song.bars), song)
    targets = check_track(track, tracks, song, the_song.describe())
    others = [i for i in range(tracks) if i not in targets]
    programs = the_song.programs(targets)
    for i, program in zip(targets, programs, strict=True):
        shared = [j for j in others if the_song.programs([j]) == [program]]
        if shared:
            raise RequestError(
                "track",
                f" {i}: track {shared[0]} plays the same program ({program}), and one stream tells tracks "
                "apart by program; rewrite both (no track)",
            )

    steer = _steering(session, controls, dict(zip(programs, targets, strict=True)), song, len(the_song.bars))

    def takes() -> list[Take]:
        out = _rewrite(session, the_song, targets, bars, session.settings.num, steer)
        return revise(session, out, targets, bars, _reviser(session, the_song.path, steer))

    return CoCreation(session, takes)


def _rewrite(
    session: Session,
    song: TimedSong,
    targets: list[int],
    bars: tuple[int, int],
    count: int,
    steer: Controls,
    temperature: float | None = None,
) -> list[Take]:
    """`count` takes of the song with bars `bars` (1-based, inclusive) of the target tracks written anew: the
    bars before them and the block of the bars after them are the prompt, the other tracks' notes in them are
    forced at their onsets and anticipated, the targets steered by `steer`; everything outside them stays note
    for note."""
    tokenizer, layout = session.tokenizer, session.layout
    first, last = bars[0], min(bars[1], len(song.bars))  # a take may end a bar before its song: what it holds
    programs = song.programs(targets)
    gap = range(first - 1, last)

    def is_given(bar: int, program: int) -> bool:
        return bar not in gap or program not in programs

    given = plan_of(layout, song.bars, gap, is_given, programs, steer)
    prompt = [tokenizer["BOS_None"], *layout.head("infill", song.bars, gap, is_given, session.room).ids]
    start, stop = span_ticks(song.score, first, last)
    out = []
    budget = session.settings.max_tokens * len(targets) + given.forced
    for row in session.write([prompt] * count, [given], budget, temperature):
        new = _written_tracks(session, row, song.score, programs, start)  # the gap's bars: from its start
        result = spliced(song.score, targets, new, start, stop)
        out.append(session.take(result, [*prompt[1:], *row], around(result, targets, start, stop)))
    return out


def _reviser(session: Session, path: Path, steer: Controls):
    """What a sweep does to one span: the take's bars of one track rewritten with everything else given, the
    take keeping what its request was given."""

    def rewrite(take: Take, track: int, bars: tuple[int, int], temperature: float) -> Take:
        song = timed_song(path, take.score, session.tokenizer, session.layout)
        new = _rewrite(session, song, [track], bars, 1, steer, temperature)[0]
        new.given = take.given
        return new

    return rewrite
