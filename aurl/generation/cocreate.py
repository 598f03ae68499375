"""Co-creation with a multitrack (MMM) run: accompany a song's tracks with new ones, rewrite some of its
bars, and steer both with attribute controls.

The song is tokenized as the run's data was, one MMM track per track of the file. What is kept is the
prompt; what is to be written is a plan of segments (aurl.generation.multitrack_grammar) that the
grammar holds the sampler to: a new track has exactly the song's bars, each bar with the song's time
signature and the controls asked for it. The result is the song's own file (its tempos, meter and kept
tracks untouched, note for note) with the written notes put in, at the file's resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import miditok
import numpy as np
import symusic
import torch
from miditok.utils import get_bars_ticks

from aurl.config import GenerateConfig
from aurl.data.controls import controls_of
from aurl.data.corpus import read_score
from aurl.data.layout import Bar, Controls, Layout, run_layout
from aurl.data.multitrack import CONTROLS, Multitrack, Track, is_multitrack
from aurl.data.prepare import tokenize_score
from aurl.errors import DataError, RequestError
from aurl.generation.controls import ControlRequest, parse_controls, steering
from aurl.generation.generate import Trained, Work, sample_pieces, tokens_to_score
from aurl.generation.given import Given, GivenGrammar, plan_of
from aurl.generation.multitrack_grammar import MultitrackGrammar, Segment
from aurl.generation.sampler import StepHook
from aurl.generation.takes import Span, Take


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
        return "; ".join(
            f"{i}: {'drums' if t.is_drum else f'program {t.program}'}, {len(t.notes)} notes"
            for i, t in enumerate(self.score.tracks)
        )


def read_song(path: str | Path, tokenizer: miditok.MusicTokenizer, mt: Multitrack) -> Song:
    score = read_score(path)
    score.tracks = [t for t in score.tracks if len(t.notes)]
    if not score.tracks:
        raise DataError(f"{path}: holds no notes to work with")
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


class Session:
    """A run loaded for co-creation (multitrack, or one time-ordered stream): its model, tokenizer, grammar
    and sampling settings."""

    def __init__(self, trained: Trained, settings: GenerateConfig):
        self.tokenizer, self.decoder = trained.tokenizer, trained.decoder
        self.multitrack = is_multitrack(self.tokenizer)
        self.run_dir, self.mode = trained.run_dir, trained.mode
        self.settings = settings
        if settings.max_bars is not None:
            raise RequestError("settings.max_bars", ": co-creation writes exactly the song's bars; leave it unset")
        if settings.meter != "hold":
            raise RequestError("settings.meter", ": co-creation keeps the song's meter in every bar; leave it at hold")
        if self.multitrack and settings.passes > 1:
            raise RequestError("settings.passes", ": rewriting passes need a time-ordered run (REMI with use_programs)")
        self.mt = Multitrack(self.tokenizer) if self.multitrack else None
        self.layout = None if self.multitrack else run_layout(self.tokenizer, trained.config.data)
        self.grammar: MultitrackGrammar | GivenGrammar = trained.grammar  # as checked above
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.on_step: StepHook | None = None  # sees every sampled token (the studio's progress and cancel)

    def write(self, prompts: list[list[int]], plan: list[Segment] | list[Given], budget: int) -> list[list[int]]:
        """The tokens each prompt's row wrote after it (rows with equal prompts are sampled together), within
        `budget` tokens but for what the plan forces."""
        settings = self.settings.model_copy(update={"max_tokens": budget, "min_tokens": 0, "num": 1})
        out: list[list[int] | None] = [None] * len(prompts)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(tuple(prompt), []).append(i)
        for prompt, rows in groups.items():
            settings.num = len(rows)
            written = sample_pieces(
                self.decoder,
                self.mode,
                self.tokenizer,
                settings,
                self.grammar,
                self.generator,
                list(prompt),
                plan=plan,
                on_step=self.on_step,
            )
            ends = (self.tokenizer.pad_token_id, self.tokenizer["EOS_None"])
            for i, row in zip(rows, written, strict=True):
                out[i] = [t for t in row[len(prompt) :] if t not in ends]
        return out

    def decoded(self, track: Track, tpq: int) -> symusic.Track:
        """A track's tokens as notes at a file's resolution."""
        score = self.tokenizer.decode([t for t in track.ids(self.mt.track_end) if not self.mt.is_control[t]])
        score = score.resample(tpq, min_dur=1)
        return score.tracks[0] if score.tracks else symusic.Track()

    def take(self, score: symusic.Score, tokens: list[int], given: list[Span]) -> Take:
        """A written song as a take: its tokens that did not decode counted in the stream the model wrote."""
        skipped = self.mt.errors(tokens) if self.mt else tokens_to_score(self.tokenizer, self.layout.played(tokens))[1]
        return Take(score, tokens, skipped, given)

    def preview(self, ids: list[int]) -> symusic.Score:
        return tokens_to_score(self.tokenizer, ids if self.mt else self.layout.played(ids))[0]


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


@dataclass
class CoCreation(Work):
    """A co-creation checked against its song and ready: `takes` samples it."""

    session: Session
    write: Callable[[], list[Take]]  # samples the takes

    @property
    def rows(self) -> int:
        return self.session.settings.num

    def takes(self, on_step: StepHook | None = None) -> list[Take]:
        self.session.on_step = on_step
        return self.write()

    def preview(self, ids: list[int]) -> symusic.Score:
        return self.session.preview(ids)


def _whole(tracks: range, score: symusic.Score) -> list[Span]:
    return [(track, 0, score.end() + 1) for track in tracks]


def _check_keep(keep: list[int] | None, tracks: int, song: str | Path, describe: str) -> list[int]:
    keep = list(range(tracks)) if keep is None else keep
    for i in keep:
        if not 0 <= i < tracks:
            raise RequestError("keep", f" {i}: {song} has tracks 0-{tracks - 1} ({describe})")
    return keep


def _check_add(add: list[int], programs) -> None:
    if not add:
        raise RequestError("add", ": name at least one program (0-127) or drums for the new tracks")
    for program in add:
        if program not in programs:
            raise RequestError("add", f" {program}: the run's tokenizer has no such program; use 0-127 or drums")


def _check_bars(bars: tuple[int, int], count: int, song: str | Path) -> None:
    first, last = bars
    if not 1 <= first <= last <= count:
        raise RequestError("bars", f" {first}-{last}: {song} has bars 1-{count}; give A-B within them")


def _check_track(track: int | None, tracks: int, song: str | Path, describe: str) -> list[int]:
    """The tracks rewritten: `track`, or every track."""
    if track is not None and not 0 <= track < tracks:
        raise RequestError("track", f" {track}: {song} has tracks 0-{tracks - 1} ({describe})")
    return [track] if track is not None else list(range(tracks))


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
    if not session.multitrack:
        return _accompany_in_time(session, song, add, keep, controls)
    mt = session.mt
    the_song = read_song(song, session.tokenizer, mt)
    keep = _check_keep(keep, len(the_song.tracks), song, the_song.describe())
    _check_add(add, mt.program)
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
            out.append(session.take(score, [*prompt[1:], *row], _whole(range(len(keep)), score)))
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
    if not session.multitrack:
        return _infill_in_time(session, song, bars, track, controls)
    mt = session.mt
    the_song = read_song(song, session.tokenizer, mt)
    _check_bars(bars, the_song.bars, song)
    first, last = bars
    targets = _check_track(track, len(the_song.tracks), song, the_song.describe())
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
        start, stop = _span_ticks(score, first, last)
        out = []
        for i, tracks in enumerate(current):
            result = score.copy()
            for target in targets:
                new = session.decoded(tracks[target], score.ticks_per_quarter).notes
                kept = [n for n in result.tracks[target].notes if not start <= n.time < stop]
                written = _fitted([n for n in new if start <= n.time < stop], kept)
                result.tracks[target].notes = symusic.core.NoteTickList(kept + written)
                result.tracks[target].notes.sort()
            out.append(session.take(result, tokens[i], _around(result, targets, start, stop)))
        return out

    return CoCreation(session, takes)


def _span_ticks(score: symusic.Score, first: int, last: int) -> tuple[int, int]:
    """Where bars first-last (1-based, inclusive) of a file start and stop, by its own bar lines."""
    ticks = [*get_bars_ticks(score), 2**31 - 1]
    return ticks[first - 1], ticks[min(last, len(ticks) - 1)]


def _around(score: symusic.Score, targets: list[int], start: int, stop: int) -> list[Span]:
    """What an infill keeps: the other tracks whole, the targets outside [start, stop)."""
    end = score.end() + 1
    others = [i for i in range(len(score.tracks)) if i not in targets]
    return [*_whole(others, score), *((t, 0, start) for t in targets), *((t, stop, end) for t in targets)]


def _fitted(written: list, kept: list) -> list:
    """Written notes that leave the kept ones intact in a MIDI file, where a note of one pitch ends at
    the next note-off of that pitch: a written note that starts while a kept note of its pitch sounds is
    dropped, and every written note ends by the next onset of its pitch."""
    out = [w for w in written if not any(k.pitch == w.pitch and k.time <= w.time < k.time + k.duration for k in kept)]
    onsets: dict[int, list[int]] = {}
    for n in [*kept, *out]:
        onsets.setdefault(n.pitch, []).append(n.time)
    for w in out:
        later = [t for t in onsets[w.pitch] if t > w.time]
        if later:
            w.duration = min(w.duration, min(later) - w.time)
    return out


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


# ---- the time-ordered stream (REMI with programs): given notes forced at their onsets (aurl.generation.given)


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
        return "; ".join(
            f"{i}: {'drums' if t.is_drum else f'program {t.program}'}, {len(t.notes)} notes"
            for i, t in enumerate(self.score.tracks)
        )


def read_timed_song(path: str | Path, tokenizer: miditok.MusicTokenizer, layout: Layout) -> TimedSong:
    score = read_score(path)
    score.tracks = [t for t in score.tracks if len(t.notes)]
    if not score.tracks:
        raise DataError(f"{path}: holds no notes to work with")
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
    session: Session, stream: list[int], song: symusic.Score, programs: list[int]
) -> list[symusic.Track]:
    """The tracks of `programs` in a decoded stream (BOS dropped), at the song's resolution, in that order,
    none sounding past the song's end."""
    played = session.layout.played(stream)
    score = tokens_to_score(session.tokenizer, played)[0].resample(song.ticks_per_quarter, min_dur=1)
    found = {-1 if t.is_drum else t.program: t for t in score.tracks}
    tracks = [found.get(p, symusic.Track(program=max(p, 0), is_drum=p < 0)) for p in programs]
    end = song.end()
    for track in tracks:
        for note in track.notes:
            note.duration = max(1, min(note.duration, end - note.time))
    return tracks


def _accompany_in_time(
    session: Session, song: str | Path, add: list[int], keep: list[int] | None, controls: list[str]
) -> CoCreation:
    """Keep tracks of the song and write new ones in the one stream, the kept notes forced at their onsets."""
    tokenizer, layout = session.tokenizer, session.layout
    the_song = read_timed_song(song, tokenizer, layout)
    keep = _check_keep(keep, len(the_song.score.tracks), song, the_song.describe())
    _check_add(add, session.grammar.program_id)
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
    given = plan_of(layout, bars, range(len(bars)), lambda bar, program: True, add, steer)
    prompt = [tokenizer["BOS_None"]]

    def takes() -> list[Take]:
        out = []
        budget = session.settings.max_tokens * len(add) + given.forced  # max_tokens for each new track
        for row in session.write([prompt] * session.settings.num, [given], budget):
            score = the_song.score.copy()
            written = _written_tracks(session, row, the_song.score, add)
            score.tracks = [the_song.score.tracks[k].copy() for k in keep] + written
            out.append(session.take(score, row, _whole(range(len(keep)), score)))
        return _passes(session, the_song.path, out, list(tracks.values()), (1, len(bars)), steer)

    return CoCreation(session, takes)


def _infill_in_time(
    session: Session, song: str | Path, bars: tuple[int, int], track: int | None, controls: list[str]
) -> CoCreation:
    """Rewrite bars of one track (or of all) in the one stream: the bars before them are the prompt, the other
    tracks' notes in them are forced at their onsets."""
    tokenizer, layout = session.tokenizer, session.layout
    the_song = read_timed_song(song, tokenizer, layout)
    tracks = len(the_song.score.tracks)
    _check_bars(bars, len(the_song.bars), song)
    targets = _check_track(track, tracks, song, the_song.describe())
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
        return _passes(session, the_song.path, out, targets, bars, steer)

    return CoCreation(session, takes)


def _rewrite(
    session: Session, song: TimedSong, targets: list[int], bars: tuple[int, int], count: int, steer: Controls
) -> list[Take]:
    """`count` takes of the song with bars `bars` (1-based, inclusive) of the target tracks written anew: the
    bars before them are the prompt, the other tracks' notes in them are forced at their onsets and
    anticipated, the targets steered by `steer`; everything outside them stays note for note."""
    tokenizer, layout = session.tokenizer, session.layout
    first, last = bars[0], min(bars[1], len(song.bars))  # a take may end a bar before its song: what it holds
    programs = song.programs(targets)
    gap = range(first - 1, last)

    def is_given(bar: int, program: int) -> bool:
        return bar not in gap or program not in programs

    given = plan_of(layout, song.bars, gap, is_given, programs, steer)
    prompt = [tokenizer["BOS_None"], *layout.lay_out(song.bars, first - 1, is_given).ids]
    score = song.score
    start, stop = _span_ticks(score, first, last)
    out = []
    budget = session.settings.max_tokens * len(targets) + given.forced
    for row in session.write([prompt] * count, [given], budget):
        new = _written_tracks(session, [*prompt[1:], *row], score, programs)
        result = score.copy()
        for target, written in zip(targets, new, strict=True):
            kept = [n for n in result.tracks[target].notes if not start <= n.time < stop]
            fresh = _fitted([n for n in written.notes if start <= n.time < stop], kept)
            result.tracks[target].notes = symusic.core.NoteTickList(kept + fresh)
            result.tracks[target].notes.sort()
        out.append(session.take(result, [*prompt[1:], *row], _around(result, targets, start, stop)))
    return out


def _passes(
    session: Session, path: Path, takes: list[Take], written: list[int], bars: tuple[int, int], steer: Controls
) -> list[Take]:
    """generate.passes - 1 more passes over each take (pseudo-Gibbs sampling, as in DeepBach and Coconet):
    each written track rewritten in turn in `bars`, every other track given, so that each voice hears the
    voices written after it. Each take keeps what its first pass was given."""
    for _ in range(session.settings.passes - 1):
        for track in written:
            takes = [
                _rewritten(
                    session, timed_song(path, take.score, session.tokenizer, session.layout), track, bars, take, steer
                )
                for take in takes
            ]
    return takes


def _rewritten(
    session: Session, song: TimedSong, track: int, bars: tuple[int, int], take: Take, steer: Controls
) -> Take:
    new = _rewrite(session, song, [track], bars, 1, steer)[0]
    new.given = take.given
    return new
