"""Latent-space operations of VAE runs: encode a MIDI or score file, and interpolate between two encodings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import miditok
import torch

from aurl.config import Config
from aurl.data.corpus import read_score
from aurl.data.dataset import SegmentDataset
from aurl.data.prepare import tokenize_score
from aurl.data.programs import VOICES
from aurl.data.tokenize import TokenTables, bar_token_ids
from aurl.errors import DataError
from aurl.models.vae import VAE


def encode_file(
    path: str | Path, model: VAE, tokenizer: miditok.MusicTokenizer, config: Config, voices: Sequence[int] = VOICES
) -> torch.Tensor:
    """The latent mean (latent_dim,) of the first segment (data.segment_bars bars) of a MIDI or score file (its
    voices on `voices`)."""
    ids = tokenize_score(tokenizer, read_score(path, voices=voices))
    if ids.size == 0:
        raise DataError(f"{path}: holds no notes to encode")
    tables = TokenTables.from_tokenizer(tokenizer)
    segments = SegmentDataset(
        [ids], tables, bar_token_ids(tokenizer), config.data.segment_bars, config.data.seq_len, train=False
    )
    item = segments[0]
    with torch.no_grad():
        mu, _ = model.encode(item["input_ids"][None], item["mask"][None])
    return mu[0]


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation from a (t=0) to b (t=1); linear when the two are (anti)parallel."""
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(torch.sin(omega).abs()) < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
