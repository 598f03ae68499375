"""What every co-creation request shares, in either kind of run (multitrack MMM, or one time-ordered stream):
the run loaded with the request's settings (`Session`), the work it hands back (`CoCreation`), the checks of a
request's fields against its song, and how written notes are put into a song without touching the notes it
keeps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import symusic
import torch
from miditok.utils import get_bars_ticks

from aurl.config import GenerateConfig
from aurl.data.corpus import read_score
from aurl.data.grid import VoiceGrid
from aurl.data.layout import run_layout
from aurl.data.multitrack import Multitrack, Track, is_multitrack
from aurl.data.programs import VOICES
from aurl.errors import DataError, RequestError
from aurl.generation.generate import Trained, Work, sample_pieces, tokens_to_score
from aurl.generation.given import Given, GivenGrammar
from aurl.generation.multitrack_grammar import MultitrackGrammar, Segment
from aurl.generation.sampler import StepHook
from aurl.generation.takes import Span, Take


class Session:
    """A run loaded for co-creation (multitrack, one time-ordered stream, or a voice grid): its model, tokenizer,
    grammar and sampling settings."""

    def __init__(self, trained: Trained, settings: GenerateConfig):
        self.tokenizer, self.decoder = trained.tokenizer, trained.decoder
        self.multitrack = is_multitrack(self.tokenizer)
        self.run_dir, self.mode = trained.run_dir, trained.mode
        self.settings = settings
        self.voices = trained.song_voices  # what a song's voices take where its score names no instrument
        for name in ("min_bars", "max_bars"):
            if getattr(settings, name) is not None:
                raise RequestError(f"settings.{name}", ": co-creation writes exactly the song's bars; leave it unset")
        if settings.meter != "hold":
            raise RequestError("settings.meter", ": co-creation keeps the song's meter in every bar; leave it at hold")
        self.grid = isinstance(self.tokenizer, VoiceGrid)
        if (self.multitrack or self.grid) and settings.sweeps > 0:
            raise RequestError("settings.sweeps", ": revision sweeps need a time-ordered run (REMI with use_programs)")
        self.mt = Multitrack(self.tokenizer) if self.multitrack else None
        self.layout = None if self.multitrack or self.grid else run_layout(self.tokenizer, trained.config.data)
        self.room = trained.config.data.seq_len  # a request reads as much as a training window held
        self.grammar: MultitrackGrammar | GivenGrammar = trained.grammar  # as checked above
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.on_step: StepHook | None = None  # sees every sampled token (the studio's progress and cancel)
        self.log: Callable[[str], None] | None = None  # a line per revision sweep

    def write(
        self, prompts: list[list[int]], plan: list[Segment] | list[Given], budget: int, temperature: float | None = None
    ) -> list[list[int]]:
        """The tokens each prompt's row wrote after it (rows with equal prompts are sampled together), within
        `budget` tokens but for what the plan forces, at `temperature` (default: the request's)."""
        update = {"max_tokens": budget, "min_tokens": 0, "num": 1}
        if temperature is not None:
            update["temperature"] = temperature
        settings = self.settings.model_copy(update=update)
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
        skipped = self.mt.errors(tokens) if self.mt else tokens_to_score(self.tokenizer, self.played(tokens))[1]
        return Take(score, tokens, skipped, given)

    def preview(self, ids: list[int]) -> symusic.Score:
        return tokens_to_score(self.tokenizer, self.played(ids))[0]

    def played(self, ids: list[int]) -> list[int]:
        """What of a written stream sounds: a time-ordered layout's blocks are read, never played."""
        return self.layout.played(ids) if self.layout is not None else ids


@dataclass
class CoCreation(Work):
    """A co-creation checked against its song and ready: `takes` samples it."""

    session: Session
    write: Callable[[], list[Take]]  # samples the takes

    @property
    def rows(self) -> int:
        return self.session.settings.num

    def takes(self, on_step: StepHook | None = None) -> list[Take]:
        self.session.on_step, self.session.log = on_step, self.log
        return self.write()

    def preview(self, ids: list[int]) -> symusic.Score:
        return self.session.preview(ids)


def song_score(path: str | Path, voices: Sequence[int] = VOICES) -> symusic.Score:
    """A user's file as co-creation reads it: its tracks with notes (track numbers count those, in file order);
    a score's voices on `voices`."""
    score = read_score(path, voices=voices)
    score.tracks = [t for t in score.tracks if len(t.notes)]
    if not score.tracks:
        raise DataError(f"{path}: holds no notes to work with")
    return score


def describe(score: symusic.Score) -> str:
    """A song's tracks as an error names them."""
    return "; ".join(
        f"{i}: {'drums' if t.is_drum else f'program {t.program}'}, {len(t.notes)} notes"
        for i, t in enumerate(score.tracks)
    )


def whole(tracks: range | list[int], score: symusic.Score) -> list[Span]:
    return [(track, 0, score.end() + 1) for track in tracks]


def check_keep(keep: list[int] | None, tracks: int, song: str | Path, describe: str) -> list[int]:
    keep = list(range(tracks)) if keep is None else keep
    for i in keep:
        if not 0 <= i < tracks:
            raise RequestError("keep", f" {i}: {song} has tracks 0-{tracks - 1} ({describe})")
    return keep


def check_add(add: list[int], programs) -> None:
    if not add:
        raise RequestError("add", ": name at least one program (0-127) or drums for the new tracks")
    for program in add:
        if program not in programs:
            raise RequestError("add", f" {program}: the run's tokenizer has no such program; use 0-127 or drums")


def check_bars(bars: tuple[int, int], count: int, song: str | Path) -> None:
    first, last = bars
    if not 1 <= first <= last <= count:
        raise RequestError("bars", f" {first}-{last}: {song} has bars 1-{count}; give A-B within them")


def check_track(track: int | None, tracks: int, song: str | Path, describe: str) -> list[int]:
    """The tracks rewritten: `track`, or every track."""
    if track is not None and not 0 <= track < tracks:
        raise RequestError("track", f" {track}: {song} has tracks 0-{tracks - 1} ({describe})")
    return [track] if track is not None else list(range(tracks))


def span_ticks(score: symusic.Score, first: int, last: int) -> tuple[int, int]:
    """Where bars first-last (1-based, inclusive) of a file start and stop, by its own bar lines."""
    ticks = [*get_bars_ticks(score), 2**31 - 1]
    return ticks[first - 1], ticks[min(last, len(ticks) - 1)]


def around(score: symusic.Score, targets: list[int], start: int, stop: int) -> list[Span]:
    """What an infill keeps: the other tracks whole, the targets outside [start, stop)."""
    end = score.end() + 1
    others = [i for i in range(len(score.tracks)) if i not in targets]
    return [*whole(others, score), *((t, 0, start) for t in targets), *((t, stop, end) for t in targets)]


def fitted(written: list, kept: list) -> list:
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


def spliced(score: symusic.Score, targets: list[int], new: list[symusic.Track], start: int, stop: int) -> symusic.Score:
    """The song with the targets' notes in [start, stop) replaced by those of `new` there (one track each)."""
    result = score.copy()
    for target, written in zip(targets, new, strict=True):
        kept = [n for n in result.tracks[target].notes if not start <= n.time < stop]
        fresh = fitted([n for n in written.notes if start <= n.time < stop], kept)
        result.tracks[target].notes = symusic.core.NoteTickList(kept + fresh)
        result.tracks[target].notes.sort()
    return result
