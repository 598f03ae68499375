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
from typing import Any

import miditok
import numpy as np
import symusic
import torch
from miditok.utils import get_bars_ticks

from aurl.data.corpus import read_score
from aurl.data.layout import Bar, Layout, run_layout, time_ordered
from aurl.data.multitrack import CONTROLS, Multitrack, Track, is_multitrack
from aurl.data.prepare import tokenize_score
from aurl.errors import ConfigError, DataError
from aurl.generation.controls import ControlRequest, parse_controls
from aurl.generation.generate import Sample, Trained, sample_pieces, save_sample, tokens_to_score
from aurl.generation.given import Given, GivenGrammar, plan_of
from aurl.generation.multitrack_grammar import MultitrackGrammar, Segment
from aurl.generation.sampler import StepHook
from aurl.render import render_wav


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

    def __init__(self, run: str | Path | Trained, checkpoint: str, overrides: dict[str, Any], what: str):
        trained = run if isinstance(run, Trained) else Trained.load(run, checkpoint)
        self.tokenizer, self.decoder = trained.tokenizer, trained.decoder
        self.multitrack = is_multitrack(self.tokenizer)
        if not (self.multitrack or time_ordered(self.tokenizer)):
            raise ConfigError(
                f"{trained.run_dir}: {what} needs a run trained with tokenizer.kind REMI and use_programs "
                "(or MMM); this one is not"
            )
        self.run_dir, self.mode = trained.run_dir, trained.mode
        self.settings = trained.settings(overrides)
        if self.settings.max_bars is not None:
            raise ConfigError("generate.max_bars: co-creation writes exactly the song's bars; leave it unset")
        if self.settings.meter != "hold":
            raise ConfigError("generate.meter: co-creation keeps the song's meter in every bar; leave it at hold")
        if self.multitrack and self.settings.passes > 1:
            raise ConfigError("generate.passes: rewriting passes need a time-ordered run (REMI with use_programs)")
        self.mt = Multitrack(self.tokenizer) if self.multitrack else None
        self.layout = None if self.multitrack else run_layout(self.tokenizer, trained.config.data)
        self.grammar: MultitrackGrammar | GivenGrammar = trained.grammar  # as checked above
        self.generator = torch.Generator().manual_seed(self.settings.seed)
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

    def save(
        self, score: symusic.Score, tokens: list[int], stem: Path, log, wav: bool, soundfont, png: bool = True
    ) -> Sample:
        skipped = self.mt.errors(tokens) if self.mt else tokens_to_score(self.tokenizer, self.layout.played(tokens))[1]
        sample = save_sample(score, tokens, skipped, stem, self.run_dir.name, log, png)
        if wav:
            sample.wav = render_wav(sample.midi, sample.midi.with_suffix(".wav"), soundfont)
        return sample


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
class Work:
    """A co-creation checked against its song and ready: `write` samples it and saves the takes."""

    session: Session
    what: str  # the run's samples folder it writes to by default
    takes: Callable[[], list[tuple[symusic.Score, list[int]]]]  # samples: each take's music and tokens

    def write(
        self,
        out_dir: str | Path | None = None,
        log: Callable[[str], None] | None = print,
        wav: bool = False,
        soundfont: str | Path | None = None,
        on_step: StepHook | None = None,
        png: bool = True,
    ) -> list[Sample]:
        self.session.on_step = on_step
        takes = self.takes()
        out = Path(out_dir) if out_dir else self.session.run_dir / "samples" / self.what
        out.mkdir(parents=True, exist_ok=True)
        return [
            self.session.save(score, tokens, out / f"sample_{i}", log, wav, soundfont, png)
            for i, (score, tokens) in enumerate(takes)
        ]


def accompany(
    run: str | Path | Trained,
    song: str | Path,
    add: list[int],
    keep: list[int] | None = None,
    controls: list[list[str] | str] = (),
    out_dir: str | Path | None = None,
    checkpoint: str = "best",
    log: Callable[[str], None] | None = print,
    wav: bool = False,
    soundfont: str | Path | None = None,
    **overrides: Any,
) -> list[Sample]:
    """Keep some tracks of `song` (all by default) note for note and write new ones, one per program in
    `add` (0-127, or -1 for drums), each with exactly the song's bars. `controls`: --control requests,
    whose track numbers count the result's tracks (the kept ones first, then the added ones)."""
    return accompaniment(run, song, add, keep, controls, checkpoint, **overrides).write(out_dir, log, wav, soundfont)


def accompaniment(
    run: str | Path | Trained,
    song: str | Path,
    add: list[int],
    keep: list[int] | None = None,
    controls: list[list[str] | str] = (),
    checkpoint: str = "best",
    **overrides: Any,
) -> Work:
    """`accompany` checked and ready to write (every bad option is named before anything is sampled)."""
    session = Session(run, checkpoint, overrides, "--accompany")
    if not session.multitrack:
        return _accompany_in_time(session, song, add, keep, controls)
    mt = session.mt
    the_song = read_song(song, session.tokenizer, mt)
    keep = list(range(len(the_song.tracks))) if keep is None else keep
    for i in keep:
        if not 0 <= i < len(the_song.tracks):
            raise ConfigError(f"--keep {i}: {song} has tracks 0-{len(the_song.tracks) - 1} ({the_song.describe()})")
    if not add:
        raise ConfigError("--add: name at least one program (0-127) or drums for the new tracks")
    for program in add:
        if program not in mt.program:
            raise ConfigError(f"--add {program}: the run's tokenizer has no such program; use 0-127 or drums")
    requests = parse_controls(list(controls), session.tokenizer)
    written = range(len(keep), len(keep) + len(add))
    for request in requests:
        if request.track is not None and request.track not in written:
            raise ConfigError(
                f"--control track={request.track}: not a track being written; the new tracks are "
                f"{', '.join(map(str, written))} (kept tracks come first)"
            )
        if request.bars is not None and request.bars[1] > the_song.bars:
            raise ConfigError(f"--control bars={request.bars[0]}-{request.bars[1]}: {song} has {the_song.bars} bars")
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

    def takes() -> list[tuple[symusic.Score, list[int]]]:
        out = []
        budget = session.settings.max_tokens * len(plan)  # max_tokens per segment
        for row in session.write([prompt] * session.settings.num, plan, budget):
            new = mt.tracks(np.asarray(row, dtype=np.int64))
            score = the_song.score.copy()
            score.tracks = [the_song.score.tracks[k].copy() for k in keep] + [session.decoded(t, tpq) for t in new]
            out.append((score, [*prompt[1:], *row]))
        return out

    return Work(session, "accompany", takes)


def infill(
    run: str | Path | Trained,
    song: str | Path,
    bars: tuple[int, int],
    track: int | None = None,
    controls: list[list[str] | str] = (),
    out_dir: str | Path | None = None,
    checkpoint: str = "best",
    log: Callable[[str], None] | None = print,
    wav: bool = False,
    soundfont: str | Path | None = None,
    **overrides: Any,
) -> list[Sample]:
    """Rewrite bars `bars` (1-based, inclusive) of one track of `song` (every track, one after another,
    when `track` is None), keeping everything else note for note."""
    return infilling(run, song, bars, track, controls, checkpoint, **overrides).write(out_dir, log, wav, soundfont)


def infilling(
    run: str | Path | Trained,
    song: str | Path,
    bars: tuple[int, int],
    track: int | None = None,
    controls: list[list[str] | str] = (),
    checkpoint: str = "best",
    **overrides: Any,
) -> Work:
    """`infill` checked and ready to write (every bad option is named before anything is sampled)."""
    session = Session(run, checkpoint, overrides, "--infill")
    if not session.multitrack:
        return _infill_in_time(session, song, bars, track, controls)
    mt = session.mt
    the_song = read_song(song, session.tokenizer, mt)
    first, last = bars
    if not 1 <= first <= last <= the_song.bars:
        raise ConfigError(f"--bars {first}-{last}: {song} has bars 1-{the_song.bars}; give A-B within them")
    if track is not None and not 0 <= track < len(the_song.tracks):
        raise ConfigError(f"--track {track}: {song} has tracks 0-{len(the_song.tracks) - 1} ({the_song.describe()})")
    targets = [track] if track is not None else list(range(len(the_song.tracks)))
    requests = parse_controls(list(controls), session.tokenizer)
    for request in requests:
        if request.track is not None and request.track not in targets:
            raise ConfigError(f"--control track={request.track}: not a track being rewritten ({targets})")
    span = range(first - 1, last)

    def takes() -> list[tuple[symusic.Score, list[int]]]:
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
        ticks = [*get_bars_ticks(score), 2**31 - 1]  # the file's own bar lines: the rewritten span in its ticks
        start, stop = ticks[first - 1], ticks[min(last, len(ticks) - 1)]
        out = []
        for i, tracks in enumerate(current):
            result = score.copy()
            for target in targets:
                new = session.decoded(tracks[target], score.ticks_per_quarter).notes
                kept = [n for n in result.tracks[target].notes if not start <= n.time < stop]
                written = _fitted([n for n in new if start <= n.time < stop], kept)
                result.tracks[target].notes = symusic.core.NoteTickList(kept + written)
                result.tracks[target].notes.sort()
            out.append((result, tokens[i]))
        return out

    return Work(session, "infill", takes)


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


def _no_controls(controls: list[list[str] | str]) -> None:
    if controls:
        raise ConfigError("--control: attribute controls need a run trained with them (tokenizer.controls)")


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
    session: Session, song: str | Path, add: list[int], keep: list[int] | None, controls: list[list[str] | str]
) -> Work:
    """Keep tracks of the song and write new ones in the one stream, the kept notes forced at their onsets."""
    _no_controls(controls)
    tokenizer, layout = session.tokenizer, session.layout
    the_song = read_timed_song(song, tokenizer, layout)
    keep = list(range(len(the_song.score.tracks))) if keep is None else keep
    for i in keep:
        if not 0 <= i < len(the_song.score.tracks):
            raise ConfigError(
                f"--keep {i}: {song} has tracks 0-{len(the_song.score.tracks) - 1} ({the_song.describe()})"
            )
    if not add:
        raise ConfigError("--add: name at least one program (0-127) or drums for the new tracks")
    kept = the_song.programs(keep)
    for n, program in enumerate(add):
        if program not in session.grammar.program_id:
            raise ConfigError(f"--add {program}: the run's tokenizer has no such program; use 0-127 or drums")
        if program in kept or program in add[:n]:
            raise ConfigError(
                f"--add {program}: a kept or added track already plays it, and one stream tells tracks apart by "
                "program; choose another"
            )
    bars = the_song.bars_of(keep, tokenizer, layout)
    given = plan_of(layout, bars, range(len(bars)), lambda bar, program: True, add)
    prompt = [tokenizer["BOS_None"]]

    def takes() -> list[tuple[symusic.Score, list[int]]]:
        out = []
        budget = session.settings.max_tokens * len(add) + given.forced  # max_tokens for each new track
        for row in session.write([prompt] * session.settings.num, [given], budget):
            score = the_song.score.copy()
            written = _written_tracks(session, row, the_song.score, add)
            score.tracks = [the_song.score.tracks[k].copy() for k in keep] + written
            out.append((score, row))
        return _passes(session, the_song.path, out, list(range(len(keep), len(keep) + len(add))), (1, len(bars)))

    return Work(session, "accompany", takes)


def _infill_in_time(
    session: Session, song: str | Path, bars: tuple[int, int], track: int | None, controls: list[list[str] | str]
) -> Work:
    """Rewrite bars of one track (or of all) in the one stream: the bars before them are the prompt, the other
    tracks' notes in them are forced at their onsets."""
    _no_controls(controls)
    tokenizer, layout = session.tokenizer, session.layout
    the_song = read_timed_song(song, tokenizer, layout)
    tracks = len(the_song.score.tracks)
    first, last = bars
    if not 1 <= first <= last <= len(the_song.bars):
        raise ConfigError(f"--bars {first}-{last}: {song} has bars 1-{len(the_song.bars)}; give A-B within them")
    if track is not None and not 0 <= track < tracks:
        raise ConfigError(f"--track {track}: {song} has tracks 0-{tracks - 1} ({the_song.describe()})")
    targets = [track] if track is not None else list(range(tracks))
    others = [i for i in range(tracks) if i not in targets]
    programs = the_song.programs(targets)
    for i, program in zip(targets, programs, strict=True):
        shared = [j for j in others if the_song.programs([j]) == [program]]
        if shared:
            raise ConfigError(
                f"--track {i}: track {shared[0]} plays the same program ({program}), and one stream tells tracks "
                "apart by program; rewrite both (no --track)"
            )

    def takes() -> list[tuple[symusic.Score, list[int]]]:
        out = _rewrite(session, the_song, targets, bars, session.settings.num)
        return _passes(session, the_song.path, out, targets, bars)

    return Work(session, "infill", takes)


def _rewrite(
    session: Session, song: TimedSong, targets: list[int], bars: tuple[int, int], count: int
) -> list[tuple[symusic.Score, list[int]]]:
    """`count` takes of the song with bars `bars` (1-based, inclusive) of the target tracks written anew: the
    bars before them are the prompt, the other tracks' notes in them are forced at their onsets and
    anticipated; everything outside them stays note for note."""
    tokenizer, layout = session.tokenizer, session.layout
    first, last = bars[0], min(bars[1], len(song.bars))  # a take may end a bar before its song: what it holds
    programs = song.programs(targets)
    gap = range(first - 1, last)

    def is_given(bar: int, program: int) -> bool:
        return bar not in gap or program not in programs

    given = plan_of(layout, song.bars, gap, is_given, programs)
    prompt = [tokenizer["BOS_None"], *layout.lay_out(song.bars, first - 1, is_given).ids]
    score = song.score
    ticks = [*get_bars_ticks(score), 2**31 - 1]  # the file's own bar lines: the rewritten span in its ticks
    start, stop = ticks[first - 1], ticks[min(last, len(ticks) - 1)]
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
        out.append((result, [*prompt[1:], *row]))
    return out


Takes = list[tuple[symusic.Score, list[int]]]  # each take's music and tokens


def _passes(session: Session, path: Path, takes: Takes, written: list[int], bars: tuple[int, int]) -> Takes:
    """generate.passes - 1 more passes over each take (pseudo-Gibbs sampling, as in DeepBach and Coconet):
    each written track rewritten in turn in `bars`, every other track given, so that each voice hears the
    voices written after it."""
    for _ in range(session.settings.passes - 1):
        for track in written:
            takes = [
                _rewrite(session, timed_song(path, score, session.tokenizer, session.layout), [track], bars, 1)[0]
                for score, _ in takes
            ]
    return takes
