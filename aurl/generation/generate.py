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

from aurl.config import updated
from aurl.errors import ConfigError
from aurl.generation.latent import encode_file, slerp
from aurl.generation.sampler import sample
from aurl.models.vae import VAE
from aurl.render import piano_roll
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


def longest_run(ids: list[int]) -> int:
    best = run = 0
    for i, token in enumerate(ids):
        run = run + 1 if i and token == ids[i - 1] else 1
        best = max(best, run)
    return best


class LatentDecoder(nn.Module):
    """A VAE's decoder with its latent fixed, in the shape the sampler drives: (ids, cache) → logits."""

    def __init__(self, vae: VAE, z: torch.Tensor):
        super().__init__()
        self.vae, self.z, self.cfg = vae, z, vae.cfg

    def new_cache(self, batch: int):
        return self.vae.new_cache(batch)

    def forward(self, input_ids: torch.Tensor, cache=None) -> torch.Tensor:
        return self.vae.decode(input_ids, self.z, cache)


def tokens_to_score(tokenizer: miditok.MusicTokenizer, ids: list[int]) -> tuple[symusic.Score, int]:
    """Decode token ids (special tokens dropped) into a Score, and count the tokens that did not decode."""
    special = {tokenizer.pad_token_id, tokenizer["BOS_None"], tokenizer["EOS_None"]}
    ids = [i for i in ids if i not in special]
    if not ids:
        return symusic.Score(tokenizer.time_division), 0
    skipped = round(tokenizer.tokens_errors(ids) * len(ids))
    return tokenizer.decode(ids), skipped


def generate(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    checkpoint: str = "best",
    log: Callable[[str], None] = print,
    encode: str | Path | None = None,
    interpolate: tuple[str | Path, str | Path] | None = None,
    **overrides: Any,
) -> list[Sample]:
    """Sample pieces from a trained run; writes sample_<i>.mid and .png to out_dir.

    Settings are the run's `generate` section with any `overrides` (num, max_tokens, temperature,
    top_k, top_p, seed, z_temperature, steps) applied. A VAE run writes from z drawn from its prior,
    or, with `encode`, reconstructs the first segment of a file (num times), or, with `interpolate`,
    writes `steps` files along the spherical path between the encodings of two files.
    """
    config, tokenizer, model = load_trained(run_dir, checkpoint)
    settings = updated(config.generate, overrides, "generate")
    if (encode or interpolate) and not isinstance(model, VAE):
        raise ConfigError(f"{run_dir}: --encode and --interpolate need a latent model (model.mode vae)")
    out = Path(out_dir) if out_dir else Path(run_dir) / "samples" / checkpoint
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(settings.seed)
    eos, bos = tokenizer["EOS_None"], tokenizer["BOS_None"]
    num = settings.num
    if isinstance(model, VAE):
        if interpolate:
            a, b = (encode_file(path, model, tokenizer, config) for path in interpolate)
            z = torch.stack([slerp(a, b, i / (settings.steps - 1)) for i in range(settings.steps)])
        elif encode:
            z = encode_file(encode, model, tokenizer, config).expand(num, -1)
        else:  # the prior N(0, I), scaled by z_temperature
            z = torch.randn(num, model.cfg.latent_dim, generator=generator) * settings.z_temperature
        num = z.shape[0]
        model = LatentDecoder(model, z)
    prompt = torch.full((num, 1), bos, dtype=torch.long)
    seqs = sample(
        model,
        prompt,
        settings.max_tokens,
        settings.temperature,
        settings.top_k,
        settings.top_p,
        eos_id=eos,
        pad_id=tokenizer.pad_token_id,
        generator=generator,
    )
    samples = []
    for i, row in enumerate(seqs.tolist()):
        row = row[1 : row.index(eos)] if eos in row else row[1:]
        score, skipped = tokens_to_score(tokenizer, row)
        midi = out / f"sample_{i}.mid"
        score.dump_midi(str(midi))
        png = piano_roll(score, out / f"sample_{i}.png", title=f"{Path(run_dir).name} sample {i}")
        pitches = {int(p) for t in score.tracks for p in t.notes.numpy()["pitch"]}
        notes = sum(len(t.notes) for t in score.tracks)
        repeat = longest_run(row)
        samples.append(Sample(midi, png, len(row), notes, len(pitches), skipped, repeat))
        log(
            f"{midi}  {len(row)} tokens, {notes} notes, {len(pitches)} distinct pitches, "
            f"{skipped} skipped tokens, longest repeat {repeat}"
        )
    return samples
