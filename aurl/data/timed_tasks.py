"""Training tasks over the time-ordered stream (REMI with programs), mixed per window with the weights of
data.tasks, each window saying its task after BOS (aurl.data.layout):
- continue: a plain window, as a free piece or a primer's continuation reads;
- accompany: a random share of the window's tracks given, the others written (in a share data.drop_tracks of
  windows some tracks are first dropped altogether, so that fewer voices are in distribution too);
- infill: 1-4 bars (data.infill_bars) anywhere in the window written for one track or for all of them, the
  rest given: the bars before the gap, then up to data.suffix_bars bars after it in a block read before the
  gap (fill-in-the-middle), then the gap.
Accompany and infill windows are laid out by aurl.data.layout: given notes first at each onset, anticipated
data.ahead_bars ahead, and the written bars ended as a request's are (the next bar's Bar and EOS, or EOS where
the piece ends with them). Where the tokenizer has attribute controls, each written track of such a window is
steered by a random share of them (as MMM's windows are, aurl.data.tasks): a share data.control_tracks of its
track-level controls, and for each bar-level control a share data.control_bars of the bars it is written in,
measured on the notes it writes after the window is transposed. Every token after the task token is a target
of the loss (fill-in-the-middle trained on every token, so that co-creation windows teach free generation too)
but an EOS given after the next bar's Bar, which would teach free pieces to stop at any bar line; with
data.given_targets=false only the written ones are. Continue windows have no controls, so a free piece reads
as before. Evaluation windows are plain ones, so a model's bits per note compare with a model trained on plain
windows. An item is a pure function of (seed, window, epoch, length), as WindowDataset's are.
"""

from __future__ import annotations

import numpy as np
import torch

from aurl.config import AugmentConfig, DataConfig
from aurl.data.controls import CONTROLS, controls_of, measure, ordered
from aurl.data.dataset import IGNORE_INDEX, WindowDataset, WindowKey, augment, pack
from aurl.data.layout import Bar, Controls, IsGiven, Layout, task_ids
from aurl.data.tokenize import TokenTables


def _programs(bars: list[Bar]) -> list[int]:
    return sorted({note.program for bar in bars for onset in bar.onsets for note in onset.notes})


Task = tuple[list[Bar], IsGiven, range]  # a window's bars, what of them is given, the bars it writes


def accompany(bars: list[Bar], count: int, rng: np.random.Generator, cfg: DataConfig) -> Task:
    """Some tracks given, the others written (after dropping some, now and then); a window of one track is
    written with nothing given."""
    programs = _programs(bars[:count])
    if len(programs) > 2 and rng.random() < cfg.drop_tracks:
        dropped = set(rng.permutation(programs)[: int(rng.integers(1, len(programs) - 1))].tolist())
        bars = [bar.without(dropped) for bar in bars]
        programs = [p for p in programs if p not in dropped]
    given = set(rng.permutation(programs)[: int(rng.integers(1, len(programs))) if len(programs) > 1 else 0].tolist())
    return bars, lambda bar, program: program in given, range(count)


def infill(bars: list[Bar], count: int, rng: np.random.Generator, cfg: DataConfig) -> Task:
    """A gap of bars anywhere in the window written, for one of its tracks or for all. Only the window's bars
    are read after the gap: one that ends the window reads as one that ends a song (nothing after it)."""
    lo, hi = cfg.infill_bars
    size = int(rng.integers(min(lo, count), min(hi, count) + 1))
    first = int(rng.integers(0, count - size + 1))
    gap = range(first, first + size)
    programs = _programs(bars[first : gap.stop])
    if programs and rng.random() < 0.5:
        one = int(rng.choice(programs))
        return bars[:count], lambda bar, program: bar not in gap or program != one, gap
    return bars[:count], lambda bar, program: bar not in gap, gap


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
        super().__init__(pieces, tables, cfg.seq_len, train, augment_cfg, seed, task_ids(layout.tokenizer, "free"))
        self.layout, self.cfg = layout, cfg
        self.tasks = [name for name, weight in cfg.tasks.items() if weight > 0]
        weights = np.array([cfg.tasks[name] for name in self.tasks])
        self.task_p = weights / weights.sum()
        self.bar_starts = [np.flatnonzero(np.asarray(piece) == layout.bar) for piece in pieces]
        trained = controls_of(layout.tokenizer)
        self.controls = [name for name in CONTROLS if name in trained]

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
        if self.augment_cfg is not None:  # before controls are measured: a pitch class is the one played
            tokens = augment(tokens, self.tables, self.augment_cfg, rng)
        window, seed = self.layout.bars(tokens), int(rng.integers(2**32))
        while True:  # controls may not fit beside every bar: fewer bars, each count drawn afresh, until they do
            draw = np.random.default_rng([seed, count])
            bars, given, gap = TASKS[task](window, count, draw, self.cfg)
            laid = self.layout.window(task, bars, gap, given, self._controls(bars, count, given, draw))
            ending = self.layout.ending(first + gap.stop < len(starts))  # as a request ends
            laid.extend(ending)
            if len(laid.ids) <= length or count == 1:
                break
            count -= 1
        ids = np.asarray([self.tables.bos_id, *laid.ids[:length]], dtype=np.int64)
        item = pack(ids, length, self.tables.pad_id)
        read = laid.given
        if self.cfg.given_targets:  # all but the task token and an EOS that only ends the request, not the piece
            opening = len(task_ids(self.layout.tokenizer, task))
            read = [True] * opening + [False] * (len(laid.ids) - opening - len(ending.ids)) + ending.given
        item["targets"][torch.tensor(read[:length] + [False] * (length - min(length, len(read))))] = IGNORE_INDEX
        item["weight"] = (item["targets"] != IGNORE_INDEX).sum().to(torch.float32)
        return item

    def _controls(self, bars: list[Bar], count: int, given: IsGiven, rng: np.random.Generator) -> Controls | None:
        """The controls that steer each track written in the first `count` bars (see the module's docstring):
        its chosen ones, measured on the notes it writes from its first written bar to its last."""
        if not self.controls:
            return None
        track_names = [name for name in self.controls if name.startswith("track_")]
        bar_names = [name for name in self.controls if name.startswith("bar_")]
        programs = _programs(bars[:count])
        whole: dict[int, list[int]] = {}
        per_bar: dict[tuple[int, int], dict[str, list[int]]] = {}
        for program in programs:
            written = [b for b in range(count) if not given(b, program)]
            if not written:
                continue
            share = rng.uniform(*self.cfg.control_tracks)
            chosen = rng.permutation(track_names)[: round(share * len(track_names))].tolist()
            kept = {}
            for name in bar_names:
                share = rng.uniform(*self.cfg.control_bars)
                kept[name] = set(rng.permutation(written)[: round(share * len(written))].tolist())
            names = [*chosen, *(name for name, where in kept.items() if where)]
            if not names:
                continue
            others = set(programs) - {program}
            start = written[0]
            alone = [t for bar in bars[start : written[-1] + 1] for t in self.layout.plain(bar.without(others))]
            track, by_bar = measure(self.layout.tokenizer, alone, names)
            whole[program] = ordered({name: track[name] for name in chosen if name in track})
            for name, where in kept.items():
                for j, ids in by_bar.get(name, {}).items():
                    if start + j in where:
                        per_bar.setdefault((start + j, program), {})[name] = ids
        return lambda bar, program: whole.get(program, []) if bar is None else ordered(per_bar.get((bar, program), {}))
