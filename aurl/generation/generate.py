"""`aurl generate` as a function: a trained run → sampled tokens → MIDI files and piano-roll PNGs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import miditok
import symusic
import torch
from torch import nn

from aurl.config import GenerateConfig, updated
from aurl.data.corpus import read_score
from aurl.data.multitrack import Multitrack, is_multitrack
from aurl.data.prepare import tokenize_score
from aurl.data.tokenize import bar_token_ids
from aurl.errors import ConfigError, DataError
from aurl.generation.grammar import Grammar
from aurl.generation.latent import encode_file, slerp
from aurl.generation.multitrack_grammar import MultitrackGrammar, Segment
from aurl.generation.sampler import sample
from aurl.modes import MODES, LanguageModelMode
from aurl.render import piano_roll, render_wav
from aurl.training.run import load_trained


@dataclass
class Sample:
    midi: Path
    png: Path
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
    return MultitrackGrammar(tokenizer) if is_multitrack(tokenizer) else Grammar(tokenizer)


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
) -> list[list[int]]:
    """Token rows (prompt first) of settings.num pieces, or of one piece per row of a latent model's z,
    sampled settings.batch_size at a time on the model's device."""
    device = next(model.parameters()).device
    num = z.shape[0] if z is not None else settings.num
    bars = bar_token_ids(tokenizer)
    rows: list[list[int]] = []
    for first in range(0, num, settings.batch_size):
        n = min(settings.batch_size, num - first)
        decoder = mode.decoder(model, z[first : first + n] if z is not None else None)
        seqs = sample(
            decoder,
            torch.tensor([prompt] * n, dtype=torch.long, device=device),
            settings,
            grammar,
            eos_id=tokenizer["EOS_None"],
            pad_id=tokenizer.pad_token_id,
            bar_ids=bars,
            generator=generator,
            plan=plan,
        )
        rows += seqs.tolist()
    return rows


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
    **overrides: Any,
) -> list[Sample]:
    """Sample pieces from a trained run; writes sample_<i>.mid and .png to out_dir.

    Settings are the run's `generate` section with any `overrides` (see GenerateConfig: num, max_tokens,
    temperature, top_k, top_p, min_p, repetition_penalty, max_bars, constrained, seed, ...) applied.
    With `primer`, every piece continues the first primer_bars bars of that MIDI file. A VAE run writes
    from z drawn from its prior, or, with `encode`, reconstructs the first segment of a file (num times),
    or, with `interpolate`, writes `steps` files along the spherical path between two files' encodings.
    With `wav`, each sample is also rendered to sample_<i>.wav through `soundfont` (default TimGM6mb).
    """
    config, tokenizer, model = load_trained(run_dir, checkpoint)
    mode = MODES[config.model.mode]
    settings = updated(config.generate, overrides, "generate")
    if (encode or interpolate) and not mode.latent:
        raise ConfigError(f"{run_dir}: --encode and --interpolate need a latent model (model.mode vae)")
    if is_multitrack(tokenizer) and settings.max_bars is not None:
        raise ConfigError("generate.max_bars: a multitrack (MMM) run counts bars per track; leave it unset")
    grammar = grammar_for(tokenizer) if settings.constrained else None
    bos = tokenizer["BOS_None"]
    prompt, head = [bos], None
    if primer is not None:
        ids, head = primer_tokens(primer, tokenizer, settings.primer_bars)
        prompt += ids
    out = Path(out_dir) if out_dir else Path(run_dir) / "samples" / checkpoint
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(settings.seed)
    if interpolate:
        a, b = (encode_file(path, model, tokenizer, config) for path in interpolate)
        z = torch.stack([slerp(a, b, i / (settings.steps - 1)) for i in range(settings.steps)])
    elif encode:
        z = encode_file(encode, model, tokenizer, config).expand(settings.num, -1)
    else:
        z = mode.prior(model, settings.num, generator, settings.z_temperature)
    rows = sample_pieces(model, mode, tokenizer, settings, grammar, generator, prompt, z)
    title = Path(run_dir).name
    samples = [write_sample(tokenizer, row[1:], out / f"sample_{i}", head, title, log) for i, row in enumerate(rows)]
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
) -> Sample:
    """Decode one sampled row (BOS dropped) and write its MIDI file and piano roll (stem.mid, stem.png);
    a primer's tempos and time signatures are kept where the tokens do not carry them."""
    eos = tokenizer["EOS_None"]
    row = row[: row.index(eos)] if eos in row else row
    score, skipped = tokens_to_score(tokenizer, row)
    if primer is not None:
        keep_meter(score, primer, tokenizer)
    return save_sample(score, row, skipped, stem, title, log)


def save_sample(
    score: symusic.Score, row: list[int], skipped: int, stem: Path, title: str, log: Callable[[str], None] | None
) -> Sample:
    """Write a written piece's MIDI file and piano roll (stem.mid, stem.png) and say what it holds."""
    midi = stem.with_suffix(".mid")
    score.dump_midi(str(midi))
    png = piano_roll(score, stem.with_suffix(".png"), title=f"{title} {stem.name}")
    pitches = {int(p) for t in score.tracks for p in t.notes.numpy()["pitch"]}
    notes = sum(len(t.notes) for t in score.tracks)
    repeat = longest_run(row)
    if log is not None:
        log(
            f"{midi}  {len(row)} tokens, {notes} notes, {len(pitches)} distinct pitches, "
            f"{skipped} skipped tokens, longest repeat {repeat}"
        )
    return Sample(midi, png, len(row), notes, len(pitches), skipped, repeat)
