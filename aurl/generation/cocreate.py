"""Co-creation requests: accompany a song's tracks with new ones, rewrite some of its bars, and steer both with
attribute controls. A time-ordered run does them in its one stream (aurl.generation.timed); a multitrack (MMM)
run here.

With MMM the song is tokenized as the run's data was, one track per track of the file. What is kept is the
prompt; what is to be written is a plan of segments (aurl.generation.multitrack_grammar) that the grammar holds
the sampler to: a new track has exactly the song's bars, each bar with the song's time signature and the
controls asked for it. The result is the song's own file (its tempos, meter and kept tracks untouched, note for
note) with the written notes put in, at the file's resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import miditok
import numpy as np
import symusic

from aurl.config import GenerateConfig
from aurl.data.multitrack import CONTROLS, Multitrack, Track
from aurl.data.prepare import tokenize_score
from aurl.data.programs import VOICES
from aurl.errors import DataError, RequestError
from aurl.generation.controls import ControlRequest, parse_controls
from aurl.generation.generate import Trained
from aurl.generation.grid_cocreate import accompany_on_grid, infill_on_grid
from aurl.generation.multitrack_grammar import Segment
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
from aurl.generation.timed import accompany_in_time, infill_in_time


@dataclass
class Song:
    """A user's file as the run sees it. Tracks without notes are dropped, so track numbers (0-based)
    count the tracks that have notes, in file order."""

    path: Path
    score: symusic.Score
    tracks: list[Track]
    meters: list[list[int]]  # per bar, what follows its Bar token: [TimeSig_x], or [] without TimeSig tokens

    @property
    def bars(self) -> int:
        return len(self.meters)

    def describe(self) -> str:
        return describe(self.score)


def read_song(
    path: str | Path, tokenizer: miditok.MusicTokenizer, mt: Multitrack, voices: Sequence[int] = VOICES
) -> Song:
    score = song_score(path, voices)
    tracks = []
    for track in score.tracks:  # one at a time, so track i of the file is track i of the tokens
        alone = score.copy()
        alone.tracks = [track.copy()]
        found = mt.tracks(tokenize_score(tokenizer, alone).astype(np.int64))
        if len(found) != 1 or not found[0].bars:
            raise DataError(f"{path}: a track could not be tokenized (notes outside the run's pitch range?)")
        tracks.append(found[0])
    meters: list[list[int]] = []
    for bar in range(max(len(t.bars) for t in tracks)):  # MMM's REMI writes a TimeSig right after each Bar
        found = [[int(t.bars[bar][1])] for t in tracks if bar < len(t.bars) and _is_meter(t.bars[bar], mt)]
        meters.append(found[0] if found else meters[-1] if meters else [])
    return Song(Path(path), score, tracks, meters)


def _is_meter(bar: np.ndarray, mt: Multitrack) -> bool:
    return len(bar) > 1 and mt.tokenizer[int(bar[1])].startswith("TimeSig_")


def _bar_plan(song: Song, requests: list[ControlRequest], track: int, bars: range) -> dict[int, list[int]]:
    """Forced tokens after each Bar of a segment covering song bars `bars` (0-based): the requested
    bar-level controls, in training's order, then the song's time signature."""
    return {k: [*_control_tokens(requests, track, bar + 1), *song.meters[bar]] for k, bar in enumerate(bars)}


def _control_tokens(requests: list[ControlRequest], track: int, bar: int | None) -> list[int]:
    """The tokens of the controls requested for a track (bar None) or one of its bars (1-based)."""
    chosen: dict[str, list[int]] = {}
    for request in requests:
        if request.covers(track, bar):
            chosen.update(request.tokens)
    return [t for name in CONTROLS if name in chosen for t in chosen[name]]


def accompaniment(
    trained: Trained,
    settings: GenerateConfig,
    song: str | Path,
    add: list[int],
    keep: list[int] | None = None,
    controls: list[str] = (),
) -> CoCreation:
    """Keep some tracks of `song` (all by default) note for note and write new ones, one per program in
    `add` (0-127, or -1 for drums), each with exactly the song's bars. `controls`: control requests,
    whose track numbers count the result's tracks (the kept ones first, then the added ones)."""
    session = Session(trained, settings)
    if session.grid:
        return accompany_on_grid(session, song, add, keep, controls)
    if not session.multitrack:
        return accompany_in_time(session, song, add, keep, controls)
    mt = session.mt
    the_song = read_song(song, session.tokenizer, mt, session.voices)
    keep = check_keep(keep, len(the_song.tracks), song, the_song.describe())
    check_add(add, mt.program)
    requests = parse_controls(list(controls), session.tokenizer)
    written = range(len(keep), len(keep) + len(add))
    for request in requests:
        if request.track is not None and request.track not in written:
            raise RequestError(
                "controls",
                f" track={request.track}: not a track being written; the new tracks are "
                f"{', '.join(map(str, written))} (kept tracks come first)",
            )
        if request.bars is not None and request.bars[1] > the_song.bars:
            raise RequestError(
                "controls", f" bars={request.bars[0]}-{request.bars[1]}: {song} has {the_song.bars} bars"
            )
    kept = [the_song.tracks[i] for i in keep]
    prompt = [mt.bos, *(t for track in kept for t in track.ids(mt.track_end))]
    plan = [
        Segment(
            [mt.track_start, mt.program[program], *_control_tokens(requests, n, None)],
            the_song.bars,
            mt.track_end,
            _bar_plan(the_song, requests, n, range(the_song.bars)),
        )
        for n, program in zip(written, add, strict=True)
    ]
    tpq = the_song.score.ticks_per_quarter

    def takes() -> list[Take]:
        out = []
        budget = session.settings.max_tokens * len(plan)  # max_tokens per segment
        for row in session.write([prompt] * session.settings.num, plan, budget):
            new = mt.tracks(np.asarray(row, dtype=np.int64))
            score = the_song.score.copy()
            score.tracks = [the_song.score.tracks[k].copy() for k in keep] + [session.decoded(t, tpq) for t in new]
            out.append(session.take(score, [*prompt[1:], *row], whole(range(len(keep)), score)))
        return out

    return CoCreation(session, takes)


def infilling(
    trained: Trained,
    settings: GenerateConfig,
    song: str | Path,
    bars: tuple[int, int],
    track: int | None = None,
    controls: list[str] = (),
) -> CoCreation:
    """Rewrite bars `bars` (1-based, inclusive) of one track of `song` (every track, one after another,
    when `track` is None), keeping everything else note for note."""
    session = Session(trained, settings)
    if session.grid:
        return infill_on_grid(session, song, bars, track, controls)
    if not session.multitrack:
        return infill_in_time(session, song, bars, track, controls)
    mt = session.mt
    the_song = read_song(song, session.tokenizer, mt, session.voices)
    check_bars(bars, the_song.bars, song)
    first, last = bars
    targets = check_track(track, len(the_song.tracks), song, the_song.describe())
    requests = parse_controls(list(controls), session.tokenizer)
    for request in requests:
        if request.track is not None and request.track not in targets:
            raise RequestError("controls", f" track={request.track}: not a track being rewritten ({targets})")
    span = range(first - 1, last)

    def takes() -> list[Take]:
        current = [list(the_song.tracks) for _ in range(session.settings.num)]  # each sample's tracks so far
        tokens = [[] for _ in current]
        for target in targets:  # a track at a time, as the model was trained (one holed track per window)
            prompts, holed = [], []
            for tracks in current:
                old = tracks[target]
                header = np.concatenate([old.header, _control_tokens(requests, target, None)]).astype(np.int64)
                holes = [np.array([mt.infill_bar])] * len(span)
                bars_ = [*old.bars[: span.start], *holes, *old.bars[span.stop :]]
                holed.append(Track(header, bars_))
                prompts.append(
                    [
                        mt.bos,
                        *(
                            t
                            for tr in [*tracks[:target], holed[-1], *tracks[target + 1 :]]
                            for t in tr.ids(mt.track_end)
                        ),
                    ]
                )
            plan = [
                Segment(
                    [mt.infill_start, mt.bar],
                    1,
                    mt.infill_end,
                    _bar_plan(the_song, requests, target, range(bar, bar + 1)),
                )
                for bar in span
            ]
            for i, row in enumerate(session.write(prompts, plan, session.settings.max_tokens * len(plan))):
                fills = _fills(row, mt)
                old = current[i][target]
                # a fill the budget cut short leaves its bar as it was
                new_bars = [fills[k] if k < len(fills) else old.bars[bar] for k, bar in enumerate(span)]
                filled = Track(holed[i].header, [*old.bars[: span.start], *new_bars, *old.bars[span.stop :]])
                current[i] = [*current[i][:target], filled, *current[i][target + 1 :]]
                tokens[i] = [t for tr in current[i] for t in tr.ids(mt.track_end)]
        score = the_song.score
        start, stop = span_ticks(score, first, last)
        out = []
        for i, tracks in enumerate(current):
            new = [session.decoded(tracks[target], score.ticks_per_quarter) for target in targets]
            result = spliced(score, targets, new, start, stop)
            out.append(session.take(result, tokens[i], around(result, targets, start, stop)))
        return out

    return CoCreation(session, takes)


def _fills(row: list[int], mt: Multitrack) -> list[np.ndarray]:
    """The bars a row wrote, each from Infill_Start (exclusive) to Infill_End (exclusive)."""
    fills, inside = [], None
    for t in row:
        if t == mt.infill_start:
            inside = []
        elif t == mt.infill_end and inside is not None:
            fills.append(np.asarray(inside, dtype=np.int64))
            inside = None
        elif inside is not None:
            inside.append(t)
    return fills
