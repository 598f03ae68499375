"""Sampling from a trained run: the run loaded once (`Trained`), the tokens of pieces written after a prompt
(`Pieces`, the work of the requests that write from a prompt alone) and their decoding into takes."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import miditok
import symusic
import torch
from pydantic import ValidationError
from torch import nn

from aurl.config import Config, GenerateConfig
from aurl.data.corpus import read_score
from aurl.data.dataset import PreparedDataset
from aurl.data.frames import frames_of
from aurl.data.grid import VoiceGrid
from aurl.data.layout import TASK_TOKENS, time_ordered
from aurl.data.multitrack import Multitrack, is_multitrack
from aurl.data.prepare import tokenize_score
from aurl.data.programs import VOICES
from aurl.data.tokenize import bar_token_ids
from aurl.errors import ConfigError, DataError, RequestError
from aurl.generation.fast import FastDecoder
from aurl.generation.given import GivenGrammar
from aurl.generation.grammar import Grammar
from aurl.generation.grid_grammar import GridGrammar
from aurl.generation.multitrack_grammar import MultitrackGrammar, Segment
from aurl.generation.sampler import Rows, StepHook, sample
from aurl.generation.takes import Take
from aurl.modes import MODES, LanguageModelMode
from aurl.training.run import load_trained

PROGRAM_FILES = 32  # training files read to find a run's voices: enough to see what most of its pieces hold
COMMON = 0.5  # a run's voices: the programs at least this share of its training files play


@dataclass
class Trained:
    """A run loaded for generation, once: what the CLI and the studio sample from. `decoder` is what the
    sampler drives: the model, or with `compiled` its cached steps compiled (FastDecoder) where the model
    allows it."""

    run_dir: Path
    config: Config
    tokenizer: miditok.MusicTokenizer
    model: nn.Module
    decoder: nn.Module

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best", compiled: bool = False) -> Trained:
        config, tokenizer, model = load_trained(run_dir, checkpoint)
        fast = FastDecoder(model) if compiled else None
        decoder = fast if fast is not None and fast.reason is None else model
        return cls(Path(run_dir), config, tokenizer, model, decoder)

    @property
    def compiled(self) -> bool:
        """Whether steps are decoded compiled (False too once compiling has failed)."""
        return isinstance(self.decoder, FastDecoder) and self.decoder.reason is None

    @functools.cached_property
    def grammar(self) -> Grammar:
        """The tokenizer's grammar, built once (15 ms: the studio asks for it with every request)."""
        return grammar_for(self.tokenizer)

    @functools.cached_property
    def voices(self) -> list[int]:
        """The programs (-1: drums) that at least COMMON of the run's training files play, from the highest voice
        down (by mean pitch, drums last): the voices it was trained to write beside a melody. [] when its
        prepared dataset is not on this machine (generation needs only the run directory)."""
        if not self.config.data.dataset:
            return []
        try:
            data = PreparedDataset(self.config.data.dataset)
        except DataError:
            return []
        pieces = data.pieces("train")
        pieces = pieces[:: max(1, len(pieces) // PROGRAM_FILES)][:PROGRAM_FILES]  # spread over the corpus
        files: Counter[int] = Counter()
        pitches: defaultdict[int, list[int]] = defaultdict(list)
        for piece in pieces:
            score = tokens_to_score(data.tokenizer, piece.tolist())[0]
            played = {-1 if t.is_drum else t.program: t for t in score.tracks if len(t.notes)}
            files.update(played.keys())
            for program, track in played.items():
                pitches[program] += track.notes.numpy()["pitch"].tolist()
        common = [p for p, n in files.items() if n >= COMMON * len(pieces)]
        return sorted(common, key=lambda p: (p == -1, -sum(pitches[p]) / len(pitches[p])))

    @property
    def song_voices(self) -> list[int]:
        """The programs a song's voices take where its score names no instrument (aurl.data.scores): the run's
        voices but drums, the top one first, else (its dataset not on this machine) the built-in corpora's."""
        return [p for p in self.voices if p != -1] or list(VOICES)

    @property
    def cocreates(self) -> bool:
        """Whether the run's tokens can hold given material beside written (accompany, infill)."""
        return is_multitrack(self.tokenizer) or time_ordered(self.tokenizer) or isinstance(self.tokenizer, VoiceGrid)

    @property
    def mode(self) -> LanguageModelMode:
        return MODES[self.config.model.mode]

    def settings(self, overrides: dict[str, Any], task: str | None = None) -> GenerateConfig:
        """The run's generate section with its defaults for `task` (generate.tasks) and then a request's
        `overrides` applied, its meter one this run can write; a bad value is a RequestError naming
        settings.<field>."""
        run = self.config.generate
        given = {k: v for k, v in overrides.items() if v is not None}
        merged = {**run.model_dump(), **run.tasks.get(task, {}), **given}
        try:
            settings = GenerateConfig.model_validate(merged)
        except ValidationError as err:
            first = err.errors()[0]
            name = f"settings.{first['loc'][0]}" if first["loc"] else "settings"
            got = f" (got {first['input']!r})" if first["loc"] and first["type"] != "extra_forbidden" else ""
            raise RequestError(name, f": {first['msg'].removeprefix('Value error, ')}{got}") from None
        if settings.constrained:
            try:
                self.grammar.meter_id(settings.meter)
            except ConfigError as err:
                raise RequestError("settings.meter", f" {settings.meter}: {str(err).split(': ', 1)[1]}") from None
        elif settings.meter not in ("hold", "free"):
            raise RequestError("settings.meter", f" {settings.meter}: the grammar holds a meter; leave constrained on")
        return settings


class Work(ABC):
    """A request checked against its run and ready to sample (aurl.generation.requests makes them)."""

    log: Callable[[str], None] | None = None  # where a long request says how far it is (a line per sweep)

    @property
    @abstractmethod
    def rows(self) -> int:
        """The takes it writes."""

    @property
    def key(self) -> Hashable | None:
        """Works with equal keys are decoded together in one batch (`together`); None: alone."""
        return None

    @abstractmethod
    def takes(self, on_step: StepHook | None = None) -> list[Take]:
        """Sample the takes (every sampled token passes `on_step`)."""

    @classmethod
    def together(cls, works: list[Work], on_step: StepHook | None = None) -> list[list[Take]]:
        """The takes of works with one key, decoded as one batch, each as it would get them alone."""
        return [work.takes(on_step) for work in works]

    @abstractmethod
    def preview(self, ids: list[int]) -> symusic.Score:
        """The music of a first take's tokens so far (BOS dropped), for a page that watches it being written."""


@dataclass
class Pieces(Work):
    """Pieces written after one prompt (BOS, a primer's bars) with one request's settings and random generator:
    from nothing, continuing a file, and a latent model's pieces from its z."""

    trained: Trained
    prompt: list[int]
    settings: GenerateConfig
    generator: torch.Generator
    z: torch.Tensor | None = None  # a latent model's z, one row per piece
    head: symusic.Score | None = None  # a primer's bars: their meter is kept where tokens do not carry it
    head_end: int = 0  # where the primer's bars end, in its ticks: notes before it are given

    @property
    def rows(self) -> int:
        return self.z.shape[0] if self.z is not None else self.settings.num

    @property
    def key(self) -> Hashable:
        return tuple(self.prompt), self.settings.constrained

    def takes(self, on_step: StepHook | None = None) -> list[Take]:
        trained = self.trained
        grammar = trained.grammar if self.settings.constrained else None
        rows = sample_pieces(
            trained.decoder,
            trained.mode,
            trained.tokenizer,
            self.settings,
            grammar,
            self.generator,
            self.prompt,
            self.z,
            on_step=on_step,
        )
        return [self._take(row) for row in rows]

    @classmethod
    def together(cls, works: list[Pieces], on_step: StepHook | None = None) -> list[list[Take]]:
        rows = sample_together(works[0].trained, works, on_step)
        return [[work._take(row) for row in found] for work, found in zip(works, rows, strict=True)]

    def preview(self, ids: list[int]) -> symusic.Score:
        return tokens_to_score(self.trained.tokenizer, ids)[0]

    def _take(self, row: list[int]) -> Take:
        take = piece_take(self.trained.tokenizer, row, self.head)
        if self.head is not None:
            end = self.head_end * take.score.ticks_per_quarter // self.head.ticks_per_quarter
            take.given = [(track, 0, end) for track in range(len(take.score.tracks))]
        return take


def piece_take(tokenizer: miditok.MusicTokenizer, row: list[int], primer: symusic.Score | None = None) -> Take:
    """One sampled row (BOS first; padding and what follows EOS dropped) as a take; a primer's tempos and time
    signatures are kept where the tokens do not carry them."""
    ends = (tokenizer["EOS_None"], tokenizer.pad_token_id)
    row = row[1:]
    stop = next((i for i, t in enumerate(row) if t in ends), len(row))
    row = row[:stop]
    score, skipped = tokens_to_score(tokenizer, row)
    if primer is not None:
        keep_meter(score, primer, tokenizer)
    return Take(score, row, skipped)


def tokens_to_score(tokenizer: miditok.MusicTokenizer, ids: list[int]) -> tuple[symusic.Score, int]:
    """Decode token ids (special tokens, task tokens and hold pairs dropped) into a Score, and count the tokens
    that did not decode."""
    special = {tokenizer.pad_token_id, tokenizer["BOS_None"], tokenizer["EOS_None"]}
    special |= {tokenizer.vocab[name] for name in TASK_TOKENS.values() if name in tokenizer.vocab}
    ids = [i for i in ids if i not in special]
    frames = frames_of(tokenizer)
    if frames is not None:
        ids = frames.unstate(ids)
    if not ids:
        return symusic.Score(tokenizer.time_division), 0
    if is_multitrack(tokenizer):
        return tokenizer.decode(ids), Multitrack(tokenizer).errors(ids)
    if tokenizer.one_token_stream:
        return tokenizer.decode(ids), round(tokenizer.tokens_errors(ids) * len(ids))
    # Without program tokens MidiTok reads a list of sequences, one per track: aurl's one stream is one track.
    tracks = [miditok.TokSequence(ids=ids)]
    return tokenizer.decode(tracks), round(tokenizer.tokens_errors(tracks)[0] * len(ids))


def grammar_for(tokenizer: miditok.MusicTokenizer) -> Grammar:
    """The grammar of a tokenizer's sequences (a ConfigError names what has none)."""
    if is_multitrack(tokenizer):
        return MultitrackGrammar(tokenizer)
    if isinstance(tokenizer, VoiceGrid):
        return GridGrammar(tokenizer)
    return GivenGrammar(tokenizer) if time_ordered(tokenizer) else Grammar(tokenizer)


def primer_tokens(
    path: str | Path, tokenizer: miditok.MusicTokenizer, bars: int, voices: Sequence[int] = VOICES
) -> tuple[list[int], symusic.Score, int]:
    """The token ids of the first `bars` bars of a MIDI or score file (bar length from its first time
    signature, 4/4 without one; a score's voices on `voices`), those bars as a Score, and the tick where they
    end."""
    score = read_score(path, voices=voices)
    sig = score.time_signatures[0] if len(score.time_signatures) else None
    numerator, denominator = (sig.numerator, sig.denominator) if sig is not None else (4, 4)
    end = bars * numerator * score.ticks_per_quarter * 4 // denominator
    head = score.clip(0, end)  # notes that start in the bars keep their whole length
    ids = tokenize_score(tokenizer, head).tolist()
    if not ids or not any(len(t.notes) for t in head.tracks):
        raise DataError(f"{path}: no notes in its first {bars} bars to continue; raise primer_bars")
    return ids, head, end


def keep_meter(score: symusic.Score, primer: symusic.Score, tokenizer: miditok.MusicTokenizer) -> None:
    """Give a continuation its primer's tempos and time signatures where the tokens do not carry them."""
    primer = primer.resample(score.ticks_per_quarter)
    if not tokenizer.config.use_tempos:
        score.tempos = primer.tempos
    if not tokenizer.config.use_time_signatures:
        score.time_signatures = primer.time_signatures


def sample_pieces(
    model: nn.Module,
    mode: LanguageModelMode,
    tokenizer: miditok.MusicTokenizer,
    settings: GenerateConfig,
    grammar: Grammar | None,
    generator: torch.Generator,
    prompt: list[int],
    z: torch.Tensor | None = None,
    plan: list[Segment] | None = None,
    on_step: StepHook | None = None,
) -> list[list[int]]:
    """Token rows (prompt first) of settings.num pieces, or of one piece per row of a latent model's z,
    sampled settings.batch_size at a time on the model's device."""
    num = z.shape[0] if z is not None else settings.num
    rows: list[list[int]] = []
    for first in range(0, num, settings.batch_size):
        n = min(settings.batch_size, num - first)
        chunk = _Chunk(prompt, settings, generator, z[first : first + n] if z is not None else None)
        rows += _sample(model, mode, tokenizer, grammar, [chunk], [n], plan, on_step)[0]
    return rows


def sample_together(trained: Trained, requests: list[Pieces], on_step: StepHook | None = None) -> list[list[list[int]]]:
    """The token rows of several requests with one prompt and one `constrained` setting, sampled as one
    batch: each request's rows are those it would get alone (its own settings and generator)."""
    if len({tuple(r.prompt) for r in requests}) > 1 or len({r.settings.constrained for r in requests}) > 1:
        raise ValueError("sample_together: requests sampled together share a prompt and a constrained setting")
    grammar = trained.grammar if requests[0].settings.constrained else None
    counts = [r.rows for r in requests]
    return _sample(trained.decoder, trained.mode, trained.tokenizer, grammar, requests, counts, None, on_step)


@dataclass
class _Chunk:
    """Rows sampled together with one prompt, settings and generator."""

    prompt: list[int]
    settings: GenerateConfig
    generator: torch.Generator
    z: torch.Tensor | None


def _sample(model, mode, tokenizer, grammar, requests, counts, plan, on_step) -> list[list[list[int]]]:
    device = next(model.parameters()).device
    zs = [r.z for r in requests]
    z = torch.cat(zs) if zs[0] is not None else None
    seqs = sample(
        mode.decoder(model, z),
        torch.tensor([requests[0].prompt] * sum(counts), dtype=torch.long, device=device),
        requests[0].settings,
        grammar,
        eos_id=tokenizer["EOS_None"],
        pad_id=tokenizer.pad_token_id,
        bar_ids=bar_token_ids(tokenizer),
        plan=plan,
        groups=[Rows(n, r.settings, r.generator) for r, n in zip(requests, counts, strict=True)],
        on_step=on_step,
    ).tolist()
    out, first = [], 0
    for n in counts:
        out.append(seqs[first : first + n])
        first += n
    return out
