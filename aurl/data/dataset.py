"""Windows over a prepared dataset, augmentation on token ids, and the token-budget batch sampler."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from aurl.config import AugmentConfig
from aurl.data.prepare import FORMAT_VERSION, MANIFEST, TOKENS
from aurl.data.tokenize import TokenTables, load_tokenizer
from aurl.errors import DataError

IGNORE_INDEX = -100  # targets with this value (padding) carry no loss


class PreparedDataset:
    """A prepared dataset folder: the token memmap, the per-file manifest and the tokenizer."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise DataError(f"{self.folder}: not a prepared dataset (no {MANIFEST}); run `aurl prepare` first")
        try:
            self.manifest = json.loads(path.read_text())
        except ValueError:
            raise DataError(f"{path}: corrupt manifest; re-run `aurl prepare`") from None
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{path}: prepared by another aurl version; re-run `aurl prepare`")
        dtype = np.dtype(self.manifest["dtype"])
        tokens_path = self.folder / TOKENS
        expected = self.manifest["total_tokens"] * dtype.itemsize
        if not tokens_path.is_file() or tokens_path.stat().st_size != expected:
            raise DataError(f"{tokens_path}: missing or not the size the manifest says; re-run `aurl prepare`")
        self.tokens = np.memmap(tokens_path, dtype=dtype, mode="r")
        self.tokenizer = load_tokenizer(self.folder)
        self.tables = TokenTables.from_tokenizer(self.tokenizer)

    @property
    def tokenizer_hash(self) -> str:
        return self.manifest["tokenizer_hash"]

    def pieces(self, split: str) -> list[np.ndarray]:
        return [
            self.tokens[e["offset"] : e["offset"] + e["length"]] for e in self.manifest["files"] if e["split"] == split
        ]

    def unigram_entropy(self, split: str = "train") -> float:
        """Entropy (nats/token) of the split's token frequencies: the loss of a model that ignores context."""
        counts = np.zeros(self.tables.vocab_size, dtype=np.int64)
        for piece in self.pieces(split):
            counts += np.bincount(piece, minlength=self.tables.vocab_size)
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log(p)).sum())


def augment(ids: np.ndarray, tables: TokenTables, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Transpose pitches and shift velocity bins of one window, by table lookups on token ids."""
    shift = int(rng.integers(cfg.transpose[0], cfg.transpose[1] + 1))
    vshift = int(rng.integers(cfg.velocity[0], cfg.velocity[1] + 1))
    ids = ids.copy()
    pitch = tables.pitch[ids]
    is_pitch = pitch >= 0
    if shift and is_pitch.any():
        moved = pitch[is_pitch] + shift
        # All or nothing: a shift that would take any note out of the vocabulary's range is not applied.
        if moved.min() >= 0 and moved.max() < 128 and (tables.pitch_id[moved] >= 0).all():
            ids[is_pitch] = tables.pitch_id[moved]
    vbin = tables.velocity_bin[ids]
    is_vel = vbin >= 0
    if vshift and is_vel.any():
        ids[is_vel] = tables.velocity_id[np.clip(vbin[is_vel] + vshift, 0, len(tables.velocity_id) - 1)]
    return ids


@dataclass(frozen=True)
class Window:
    piece: int
    start: int | None  # None: drawn at random each epoch


class WindowDataset(Dataset):
    """Windows of seq_len (+1 for the shifted target) tokens over pieces framed as BOS + piece + EOS.

    Training windows start at random (each piece gives one window per seq_len tokens per epoch) and are
    augmented; evaluation windows tile each piece at fixed starts. A piece shorter than a window is padded
    and its padding masked out of the loss, never dropped. Item i of epoch e is a pure function of
    (seed, e, i), so data order and augmentation replay exactly on resume.
    """

    def __init__(
        self,
        pieces: list[np.ndarray],
        tables: TokenTables,
        seq_len: int,
        train: bool,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
    ):
        if not pieces:
            raise DataError("this split of the dataset holds no pieces; prepare more files or change the fractions")
        self.pieces, self.tables, self.seq_len = pieces, tables, seq_len
        self.train, self.augment_cfg, self.seed = train, augment_cfg, seed
        self.epoch = 0
        self.windows: list[Window] = []
        for i, piece in enumerate(pieces):
            n = len(piece) + 2
            if train:
                self.windows += [Window(i, None)] * math.ceil(n / seq_len)
            else:
                self.windows += [Window(i, s) for s in range(0, max(1, n - 1), seq_len)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        t = self.tables
        window = self.windows[index]
        piece = self.pieces[window.piece]
        framed = np.concatenate(([t.bos_id], piece.astype(np.int64), [t.eos_id]))
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = window.start
        if start is None:
            start = int(rng.integers(0, max(0, len(framed) - self.seq_len - 1) + 1))
        ids = framed[start : start + self.seq_len + 1]
        if self.train and self.augment_cfg is not None:
            ids = augment(ids, t, self.augment_cfg, rng)
        n = len(ids)
        tokens = np.full(self.seq_len + 1, t.pad_id, dtype=np.int64)
        tokens[:n] = ids
        targets = tokens[1:].copy()
        targets[n - 1 :] = IGNORE_INDEX
        return {"input_ids": torch.from_numpy(tokens[:-1]), "targets": torch.from_numpy(targets)}


def batch_size_for(seq_len: int, batch_tokens: int, min_batch: int, max_batch: int) -> int:
    """The token-budget rule: as many windows as the budget holds, clamped to [min_batch, max_batch]."""
    return max(min_batch, min(max_batch, batch_tokens // seq_len))


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Shuffled batches of window indices whose size follows the token budget; one pass is one epoch."""

    def __init__(self, num_windows: int, batch_size: int, shuffle: bool = True, seed: int = 0):
        self.num_windows, self.batch_size, self.shuffle, self.seed = num_windows, batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.num_windows / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_windows).tolist()
        else:
            order = list(range(self.num_windows))
        for i in range(0, self.num_windows, self.batch_size):
            yield order[i : i + self.batch_size]
