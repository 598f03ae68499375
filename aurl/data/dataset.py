"""Windows over a prepared dataset, augmentation on token ids, the token-budget batch sampler, and each
rank's share of the validation batches."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
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


def pack(ids: np.ndarray, length: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Up to length + 1 framed tokens as an item: input_ids, targets shifted by one (IGNORE_INDEX on the
    padding) and weight, the number of targets."""
    n = len(ids)
    tokens = np.full(length + 1, pad_id, dtype=np.int64)
    tokens[:n] = ids
    targets = tokens[1:].copy()
    targets[n - 1 :] = IGNORE_INDEX
    return {
        "input_ids": torch.from_numpy(tokens[:-1]),
        "targets": torch.from_numpy(targets),
        "weight": torch.tensor(n - 1, dtype=torch.float32),
    }


@dataclass(frozen=True)
class Window:
    piece: int
    start: int | None  # None: drawn at random for each (epoch, length)


WindowKey = tuple[int, int, int]  # (window index, epoch, length): what the batch sampler asks for


class WindowDataset(Dataset):
    """Windows (+1 token for the shifted target) over pieces framed as BOS + opening + piece + EOS, where the
    opening (a time-ordered run's Task_Free) is read, never a target: generation forces it.

    Training windows (one per seq_len tokens of a piece per epoch) are augmented; the first opens the
    piece, the others start at random; evaluation windows tile each piece at fixed starts. A piece
    shorter than a window is padded and its padding masked out of the loss, never dropped. An item is a
    pure function of (seed, window, epoch, length), so data order and augmentation replay exactly on
    resume and on every rank.
    Items hold `input_ids`, `targets` (IGNORE_INDEX on padding) and `weight` (the number of targets).
    """

    def __init__(
        self,
        pieces: list[np.ndarray],
        tables: TokenTables,
        seq_len: int,
        train: bool,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
        opening: Sequence[int] = (),
    ):
        if not pieces:
            raise DataError("this split of the dataset holds no pieces; prepare more files or change the fractions")
        self.pieces, self.tables, self.seq_len = pieces, tables, seq_len
        self.train, self.augment_cfg, self.seed = train, augment_cfg, seed
        self.opening = np.asarray(opening, dtype=np.int64)
        self.windows: list[Window] = []
        for i, piece in enumerate(pieces):
            n = len(piece) + 2 + len(opening)
            if train:  # one window opens the piece, so samples from BOS learn to start as pieces start
                self.windows += [Window(i, 0)] + [Window(i, None)] * (math.ceil(n / seq_len) - 1)
            else:
                self.windows += [Window(i, s) for s in range(0, max(1, n - 1), seq_len)]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, key: int | WindowKey) -> dict[str, torch.Tensor]:
        index, epoch, length = (key, 0, self.seq_len) if isinstance(key, int) else key
        t = self.tables
        window = self.windows[index]
        piece = self.pieces[window.piece]
        framed = np.concatenate(([t.bos_id], self.opening, piece.astype(np.int64), [t.eos_id]))
        rng = np.random.default_rng([self.seed, epoch, index, length])
        start = window.start
        if start is None:
            start = int(rng.integers(0, max(0, len(framed) - length - 1) + 1))
        ids = framed[start : start + length + 1]
        if self.train and self.augment_cfg is not None:
            ids = augment(ids, t, self.augment_cfg, rng)
        item = pack(ids, length, t.pad_id)
        if start == 0 and len(self.opening):
            item["targets"][: len(self.opening)] = IGNORE_INDEX
            item["weight"] -= len(self.opening)
        return item


class TokenBudgetBatchSampler(Sampler[list[WindowKey]]):
    """An endless stream of micro-batches of window keys, shuffled anew each epoch.

    `plan(i)` gives the window length and per-rank batch size of the i-th micro-batch (the curriculum
    and the token-budget rule live with the trainer). Windows come from one stream of per-epoch
    permutations, so a batch may straddle two epochs and nothing is dropped. With several ranks, each
    global batch is cut into equal per-rank slices. The whole position is two integers (`state_dict`).
    """

    def __init__(
        self,
        num_windows: int,
        plan: Callable[[int], tuple[int, int]],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.num_windows, self.plan, self.seed = num_windows, plan, seed
        self.rank, self.world_size = rank, world_size
        self.consumed = 0  # windows taken from the stream, all ranks together
        self.batches = 0  # micro-batches yielded
        self._cached: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))

    def state_dict(self) -> dict[str, int]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after state["batches"] micro-batches (the count consumed, not merely prefetched)."""
        self.batches = int(state["batches"])
        self.consumed = sum(self.plan(i)[1] for i in range(self.batches)) * self.world_size

    def _order(self, epoch: int) -> np.ndarray:
        if self._cached[0] != epoch:
            self._cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_windows))
        return self._cached[1]

    def __iter__(self) -> Iterator[list[WindowKey]]:
        while True:
            length, batch = self.plan(self.batches)
            first = self.consumed + self.rank * batch
            keys = []
            for pos in range(first, first + batch):
                epoch, offset = divmod(pos, self.num_windows)
                keys.append((int(self._order(epoch)[offset]), epoch, length))
            self.consumed += batch * self.world_size
            self.batches += 1
            yield keys


class EvalBatchSampler(Sampler[list[int]]):
    """One rank's share of the first `batches` batches of `batch` consecutive windows: batches rank,
    rank + world_size, ... Every rank yields the same number of batches, because FSDP gathers the weights
    in each forward and the ranks must run their forwards in step: a rank short of a batch yields window 0
    once more, and `counted` marks that batch as one to leave out of the sums."""

    def __init__(self, num_windows: int, batch: int, batches: int, rank: int = 0, world_size: int = 1):
        total = min(batches, math.ceil(num_windows / batch))
        self.mine = [list(range(i * batch, min((i + 1) * batch, num_windows))) for i in range(rank, total, world_size)]
        self.counted = [True] * len(self.mine) + [False] * (math.ceil(total / world_size) - len(self.mine))

    def __len__(self) -> int:
        return len(self.counted)

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.mine
        yield from ([0] for _ in range(len(self.counted) - len(self.mine)))


class SegmentDataset(Dataset):
    """Bar-aligned segments of `bars` bars (cut at Bar tokens), framed as BOS + segment + EOS, padded and
    masked to seq_len (+1 for the shifted target); a longer segment is cut at seq_len. Training segments
    start at every bar and are augmented; evaluation segments tile each piece. Items hold the keys of
    WindowDataset plus `mask` (True on the real tokens of `input_ids`), for an encoder to read."""

    def __init__(
        self,
        pieces: list[np.ndarray],
        tables: TokenTables,
        bar_ids: list[int],
        bars: int,
        seq_len: int,
        train: bool,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
        whole: bool = False,
    ):
        """whole (evaluation only): every token in some item, as a likelihood needs. The tokens before the
        first bar make a segment of their own, and a segment longer than seq_len continues in the next
        items instead of being cut."""
        if not bar_ids:
            raise DataError("segments need a tokenizer with Bar tokens (REMI); choose tokenizer.kind REMI")
        self.pieces, self.tables, self.seq_len = pieces, tables, seq_len
        self.train, self.augment_cfg, self.seed = train, augment_cfg, seed
        self.segments: list[tuple[int, int, int]] = []  # (piece, start, end) token offsets
        for i, piece in enumerate(pieces):
            starts = np.flatnonzero(np.isin(piece, bar_ids)).tolist() + [len(piece)]
            step = 1 if train else bars
            spans = [
                (starts[k], starts[min(k + bars, len(starts) - 1)]) for k in range(0, max(1, len(starts) - 1), step)
            ]
            if whole:
                chunk = seq_len - 1  # BOS + chunk + EOS: seq_len + 1 tokens
                head = [(0, starts[0])] if starts[0] > 0 else []
                spans = [(s, min(s + chunk, e)) for a, e in head + spans for s in range(a, max(a + 1, e), chunk)]
            self.segments += [(i, start, end) for start, end in spans]
        if not self.segments:
            raise DataError("this split of the dataset holds no bars to cut into segments")

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, key: int | WindowKey) -> dict[str, torch.Tensor]:
        index, epoch = (key, 0) if isinstance(key, int) else key[:2]  # the length is always seq_len
        t = self.tables
        piece, start, end = self.segments[index]
        seg = self.pieces[piece][start:end].astype(np.int64)
        ids = np.concatenate(([t.bos_id], seg, [t.eos_id]))[: self.seq_len + 1]
        if self.train and self.augment_cfg is not None:
            ids = augment(ids, t, self.augment_cfg, np.random.default_rng([self.seed, epoch, index]))
        item = pack(ids, self.seq_len, t.pad_id)
        item["mask"] = torch.arange(self.seq_len) < len(ids)  # every real token of input_ids, EOS included
        return item
