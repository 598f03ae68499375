"""Training tasks over the time-ordered stream (REMI with programs), mixed per window with the weights of
data.tasks:
- continue: a plain window, as a free piece or a primer's continuation reads;
- accompany: a random share of the window's tracks given, the others written (in a share data.drop_tracks of
  windows some tracks are first dropped altogether, so that fewer voices are in distribution too);
- infill: the last 1-4 bars of the window (data.infill_bars) written for one track or for all of them, the
  rest given; the bars after the gap are known only as they are anticipated.
Accompany and infill windows are laid out by aurl.data.layout: given notes first at each onset, anticipated
data.ahead_bars ahead, given tokens never targets of the loss, and an EOS where the window ends, as a request
ends after its last bar. Evaluation windows are plain ones, so a
model's bits per note compare with a model trained on plain windows. An item is a pure function of (seed,
window, epoch, length), as WindowDataset's are.
"""

from __future__ import annotations

import numpy as np
import torch

from aurl.config import AugmentConfig, DataConfig
from aurl.data.dataset import IGNORE_INDEX, WindowDataset, WindowKey, augment, pack
from aurl.data.layout import Bar, IsGiven, Layout
from aurl.data.tokenize import TokenTables


def _programs(bars: list[Bar]) -> list[int]:
    return sorted({note.program for bar in bars for onset in bar.onsets for note in onset.notes})


def accompany(bars: list[Bar], count: int, rng: np.random.Generator, cfg: DataConfig) -> tuple[list[Bar], IsGiven]:
    """Some tracks given, the others written (after dropping some, now and then); a window of one track is
    written with nothing given."""
    programs = _programs(bars[:count])
    if len(programs) > 2 and rng.random() < cfg.drop_tracks:
        dropped = set(rng.permutation(programs)[: int(rng.integers(1, len(programs) - 1))].tolist())
        bars = [bar.without(dropped) for bar in bars]
        programs = [p for p in programs if p not in dropped]
    given = set(rng.permutation(programs)[: int(rng.integers(1, len(programs))) if len(programs) > 1 else 0].tolist())
    return bars, lambda bar, program: program in given


def infill(bars: list[Bar], count: int, rng: np.random.Generator, cfg: DataConfig) -> tuple[list[Bar], IsGiven]:
    """The window's last bars written, for one of its tracks or for all."""
    lo, hi = cfg.infill_bars
    first = count - int(rng.integers(min(lo, count), min(hi, count) + 1))
    programs = _programs(bars[first:count])
    if programs and rng.random() < 0.5:
        one = int(rng.choice(programs))
        return bars, lambda bar, program: bar < first or bar >= count or program != one
    return bars, lambda bar, program: bar < first or bar >= count


TASKS = {"accompany": accompany, "infill": infill}


class TimedTaskDataset(WindowDataset):
    """WindowDataset's windows, each training window one task of data.tasks (see the module's docstring)."""

    def __init__(
        self,
        pieces: list[np.ndarray],
        tables: TokenTables,
        layout: Layout,
        cfg: DataConfig,
        train: bool,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
    ):
        super().__init__(pieces, tables, cfg.seq_len, train, augment_cfg, seed)
        self.layout, self.cfg = layout, cfg
        self.tasks = [name for name, weight in cfg.tasks.items() if weight > 0]
        weights = np.array([cfg.tasks[name] for name in self.tasks])
        self.task_p = weights / weights.sum()
        self.bar_starts = [np.flatnonzero(np.asarray(piece) == layout.bar) for piece in pieces]

    def __getitem__(self, key: int | WindowKey) -> dict[str, torch.Tensor]:
        index, epoch, length = (key, 0, self.seq_len) if isinstance(key, int) else key
        rng = np.random.default_rng([self.seed, epoch, index, length, 1])
        task = self.tasks[int(rng.choice(len(self.tasks), p=self.task_p))]
        piece = self.windows[index].piece
        starts = self.bar_starts[piece]
        if not self.train or task == "continue" or not len(starts):
            return super().__getitem__(key)
        first = 0 if self.windows[index].start == 0 else int(rng.integers(len(starts)))
        ends = [*starts[first + 1 :].tolist(), len(self.pieces[piece])]
        sizes = np.diff([starts[first], *ends])  # plain tokens per bar from `first`
        ahead = self.layout.ahead
        # as many bars as fit with every note given, anticipated included (a block holds less than its bar)
        blocks = np.concatenate([sizes[ahead:], np.zeros(ahead, dtype=np.int64)]) + 2 if ahead else 0
        count = max(1, int(np.searchsorted(np.cumsum(sizes + blocks), length - 1, side="right")))
        tokens = self.pieces[piece][starts[first] : ends[min(count + ahead, len(ends)) - 1]]
        bars, given = TASKS[task](self.layout.bars(tokens), count, rng, self.cfg)
        laid = self.layout.lay_out(bars, count, given)
        # the request ends where the window does: generation ends a request's last bar with EOS
        laid.add([self.tables.eos_id], False)
        ids = np.asarray([self.tables.bos_id, *laid.ids[:length]], dtype=np.int64)
        if self.augment_cfg is not None:
            ids = augment(ids, self.tables, self.augment_cfg, rng)
        item = pack(ids, length, self.tables.pad_id)
        given_targets = torch.tensor(laid.given[:length] + [False] * (length - min(length, len(laid.given))))
        item["targets"][given_targets] = IGNORE_INDEX
        item["weight"] = (item["targets"] != IGNORE_INDEX).sum().to(torch.float32)
        return item
