"""`aurl generate` as a function: a trained run → sampled tokens → MIDI files and piano-roll PNGs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import miditok
import symusic
import torch
from torch import nn

from aurl.config import Config, GenerateConfig, updated
from aurl.data.corpus import read_score
from aurl.data.layout import time_ordered
from aurl.data.multitrack import Multitrack, is_multitrack
from aurl.data.prepare import tokenize_score
from aurl.data.tokenize import bar_token_ids
from aurl.errors import ConfigError, DataError
from aurl.files import write_together
from aurl.generation.fast import FastDecoder
from aurl.generation.given import GivenGrammar
from aurl.generation.grammar import Grammar
from aurl.generation.latent import encode_file, slerp
from aurl.generation.multitrack_grammar import MultitrackGrammar, Segment
from aurl.generation.sampler import Rows, StepHook, sample
from aurl.modes import MODES, LanguageModelMode
from aurl.render import piano_roll, render_wav
from aurl.training.run import load_trained


@dataclass
class Sample:
    midi: Path
    png: Path | None  # None: not drawn (the studio draws it when asked)
    tokens: int
    notes: int
    pitches: int
    skipped_tokens: int  # tokens MidiTok could not place in the music (wrong type at that point)
    longest_repeat: int  # longest run of one token id repeated back to back
    wav: Path | None = None


def longest_run(ids: list[int]) -> int:
    best = run = 0
    for i, token in enumerate(ids):
        run = run + 1 if i and token == ids[i - 1] else 1
        best = max(best, run)
    return best


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

    @property
    def mode(self) -> LanguageModelMode:
        return MODES[self.config.model.mode]

    def settings(self, overrides: dict[str, Any]) -> GenerateConfig:
        """The run's generate section with `overrides` applied (a bad value names generate.<field>), its meter
        one this run can write."""
        settings = updated(self.config.generate, overrides, "generate")
        if settings.constrained:
            self.grammar.meter_id(settings.meter)
        elif settings.meter not in ("hold", "free"):
            meter = settings.meter
            raise ConfigError(f"generate.meter {meter}: the grammar holds a meter; leave generate.constrained on")
        return settings


@dataclass
class Pieces:
    """Pieces to write after one prompt with one request's settings and random generator."""

    prompt: list[int]
    settings: GenerateConfig
    generator: torch.Generator
    z: torch.Tensor | None = None  # a latent model's z, one row per piece
    head: symusic.Score | None = None  # a primer's bars: their meter is kept where tokens do not carry it

    @property
    def count(self) -> int:
        return self.z.shape[0] if self.z is not None else self.settings.num


def tokens_to_score(tokenizer: miditok.MusicTokenizer, ids: list[int]) -> tuple[symusic.Score, int]:
    """Decode token ids (special tokens dropped) into a Score, and count the tokens that did not decode."""
    special = {tokenizer.pad_token_id, tokenizer["BOS_None"], tokenizer["EOS_None"]}
    ids = [i for i in ids if i not in special]
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
    return GivenGrammar(tokenizer) if time_ordered(tokenizer) else Grammar(tokenizer)


def primer_tokens(path: str | Path, tokenizer: miditok.MusicTokenizer, bars: int) -> tuple[list[int], symusic.Score]:
    """The token ids of the first `bars` bars of a MIDI file (bar length from its first time signature,
    4/4 without one), and those bars as a Score."""
    score = read_score(path)
    sig = score.time_signatures[0] if len(score.time_signatures) else None
    numerator, denominator = (sig.numerator, sig.denominator) if sig is not None else (4, 4)
    end = bars * numerator * score.ticks_per_quarter * 4 // denominator
    head = score.clip(0, end)  # notes that start in the bars keep their whole length
    ids = tokenize_score(tokenizer, head).tolist()
    if not ids or not any(len(t.notes) for t in head.tracks):
        raise DataError(f"{path}: no notes in its first {bars} bars to continue; raise --primer-bars")
    return ids, head


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
        chunk = Pieces(prompt, settings, generator, z[first : first + n] if z is not None else None)
        rows += _sample(model, mode, tokenizer, grammar, [chunk], [n], plan, on_step)[0]
    return rows


def sample_together(trained: Trained, requests: list[Pieces], on_step: StepHook | None = None) -> list[list[list[int]]]:
    """The token rows of several requests with one prompt and one `constrained` setting, sampled as one
    batch: each request's rows are those it would get alone (its own settings and generator)."""
    if len({tuple(r.prompt) for r in requests}) > 1 or len({r.settings.constrained for r in requests}) > 1:
        raise ValueError("sample_together: requests sampled together share a prompt and a constrained setting")
    grammar = trained.grammar if requests[0].settings.constrained else None
    counts = [r.count for r in requests]
    return _sample(trained.decoder, trained.mode, trained.tokenizer, grammar, requests, counts, None, on_step)


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


def pieces(
    trained: Trained,
    settings: GenerateConfig,
    encode: str | Path | None = None,
    interpolate: tuple[str | Path, str | Path] | None = None,
    primer: str | Path | None = None,
) -> Pieces:
    """What `aurl generate` asks of the sampler, checked: the prompt (BOS, then a primer's first
    primer_bars bars), a latent model's z (drawn from its prior, or encoded from files) and a generator
    seeded with settings.seed."""
    run_dir, mode, tokenizer, model = trained.run_dir, trained.mode, trained.tokenizer, trained.model
    if (encode or interpolate) and not mode.latent:
        raise ConfigError(f"{run_dir}: --encode and --interpolate need a latent model (model.mode vae)")
    if is_multitrack(tokenizer) and settings.max_bars is not None:
        raise ConfigError("generate.max_bars: a multitrack (MMM) run counts bars per track; leave it unset")
    if settings.passes > 1:
        raise ConfigError("generate.passes: passes rewrite what co-creation writes (accompany, infill); leave it at 1")
    if settings.constrained:
        _ = trained.grammar  # built now: a tokenizer without one is named before anything is sampled
    prompt, head = [tokenizer["BOS_None"]], None
    if primer is not None:
        ids, head = primer_tokens(primer, tokenizer, settings.primer_bars)
        prompt += ids
    generator = torch.Generator().manual_seed(settings.seed)
    if interpolate:
        a, b = (encode_file(path, model, tokenizer, trained.config) for path in interpolate)
        z = torch.stack([slerp(a, b, i / (settings.steps - 1)) for i in range(settings.steps)])
    elif encode:
        z = encode_file(encode, model, tokenizer, trained.config).expand(settings.num, -1)
    else:
        z = mode.prior(model, settings.num, generator, settings.z_temperature)
    return Pieces(prompt, settings, generator, z, head)


def generate(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    checkpoint: str = "best",
    log: Callable[[str], None] = print,
    encode: str | Path | None = None,
    interpolate: tuple[str | Path, str | Path] | None = None,
    primer: str | Path | None = None,
    wav: bool = False,
    soundfont: str | Path | None = None,
    compiled: bool = False,
    **overrides: Any,
) -> list[Sample]:
    """Sample pieces from a trained run; writes sample_<i>.mid and .png to out_dir.

    Settings are the run's `generate` section with any `overrides` (see GenerateConfig: num, max_tokens,
    temperature, top_k, top_p, min_p, repetition_penalty, max_bars, constrained, seed, ...) applied.
    With `primer`, every piece continues the first primer_bars bars of that MIDI file. A VAE run writes
    from z drawn from its prior, or, with `encode`, reconstructs the first segment of a file (num times),
    or, with `interpolate`, writes `steps` files along the spherical path between two files' encodings.
    With `wav`, each sample is also rendered to sample_<i>.wav through `soundfont` (default TimGM6mb).
    With `compiled`, cached steps run compiled (see generation.fast): faster per token after compiling.
    """
    trained = Trained.load(run_dir, checkpoint, compiled)
    settings = trained.settings(overrides)
    request = pieces(trained, settings, encode, interpolate, primer)
    out = Path(out_dir) if out_dir else Path(run_dir) / "samples" / checkpoint
    out.mkdir(parents=True, exist_ok=True)
    grammar = trained.grammar if settings.constrained else None
    rows = sample_pieces(
        trained.decoder,
        trained.mode,
        trained.tokenizer,
        settings,
        grammar,
        request.generator,
        request.prompt,
        request.z,
    )
    title = Path(run_dir).name
    samples = [
        write_sample(trained.tokenizer, row[1:], out / f"sample_{i}", request.head, title, log)
        for i, row in enumerate(rows)
    ]
    if wav:
        for s in samples:
            s.wav = render_wav(s.midi, s.midi.with_suffix(".wav"), soundfont)
    return samples


def write_sample(
    tokenizer: miditok.MusicTokenizer,
    row: list[int],
    stem: Path,
    primer: symusic.Score | None,
    title: str,
    log: Callable[[str], None] | None = print,
    png: bool = True,
) -> Sample:
    """Decode one sampled row (BOS dropped) and write its MIDI file and piano roll (stem.mid, stem.png);
    a primer's tempos and time signatures are kept where the tokens do not carry them."""
    eos = tokenizer["EOS_None"]
    row = row[: row.index(eos)] if eos in row else row
    score, skipped = tokens_to_score(tokenizer, row)
    if primer is not None:
        keep_meter(score, primer, tokenizer)
    return save_sample(score, row, skipped, stem, title, log, png)


def save_sample(
    score: symusic.Score,
    row: list[int],
    skipped: int,
    stem: Path,
    title: str,
    log: Callable[[str], None] | None,
    png: bool = True,
) -> Sample:
    """Write a written piece's MIDI file and piano roll (stem.mid, stem.png) and say what it holds; a failed
    write is a WriteError and leaves no part of a file."""
    midi = stem.with_suffix(".mid")
    drawn = stem.with_suffix(".png") if png else None
    # dumps_midi and a Python write: symusic's dump_midi says nothing when the disk is full
    write_together({midi: lambda tmp: tmp.write_bytes(score.dumps_midi())})
    if drawn is not None:
        write_together({drawn: lambda tmp: piano_roll(score, tmp, title=f"{title} {stem.name}")})
    pitches = {int(p) for t in score.tracks for p in t.notes.numpy()["pitch"]}
    notes = sum(len(t.notes) for t in score.tracks)
    repeat = longest_run(row)
    if log is not None:
        log(
            f"{midi}  {len(row)} tokens, {notes} notes, {len(pitches)} distinct pitches, "
            f"{skipped} skipped tokens, longest repeat {repeat}"
        )
    return Sample(midi, drawn, len(row), notes, len(pitches), skipped, repeat)
