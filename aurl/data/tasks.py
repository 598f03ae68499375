"""Training tasks over multitrack (MMM) windows, one spec each, and the dataset that mixes them.

A window holds every track of up to data.window_bars consecutive bars (fewer when they would not fit
data.seq_len). Each training window is one task, drawn with the weights of data.tasks:
- continue: the tracks in their own order, so the model writes a piece track after track;
- accompany: the other tracks in random order, then the target track last (accompaniment, harmonisation);
- infill: a span of bars of one track replaced by Infill_Bar placeholders, their content written after
  the last track as Infill_Start bar Infill_End each (MMM's scheme), so both sides are in view.
Training windows are transposed like single-stream windows, then given attribute controls measured on
their own notes for a random share of tracks and bars. Controls and placeholders are inputs only: they
are never targets of the loss. Every item is a pure function of (seed, window,
epoch, length), so resume and several ranks replay it exactly. Evaluation windows tile each piece by
bars as plain `continue` windows without controls, so every note is scored once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import miditok
import numpy as np
import torch
from torch.utils.data import Dataset

from aurl.config import AugmentConfig, DataConfig
from aurl.data.controls import CONTROLS
from aurl.data.dataset import IGNORE_INDEX, WindowKey, augment, pack
from aurl.data.multitrack import Multitrack, Track
from aurl.data.tokenize import TokenTables
from aurl.errors import DataError


def sequence(mt: Multitrack, tracks: list[Track]) -> list[int]:
    """BOS, the tracks one after another, without the EOS (a task may add more before it)."""
    return [mt.bos, *(t for track in tracks for t in track.ids(mt.track_end))]


class ContinueTask:
    name = "continue"

    def assemble(self, tracks: list[Track], mt: Multitrack, rng: np.random.Generator, cfg: DataConfig) -> list[int]:
        return [*sequence(mt, tracks), mt.eos]


class AccompanyTask:
    name = "accompany"

    def assemble(self, tracks: list[Track], mt: Multitrack, rng: np.random.Generator, cfg: DataConfig) -> list[int]:
        target = int(rng.integers(len(tracks)))
        others = [tracks[i] for i in rng.permutation(len(tracks)) if i != target]
        return [*sequence(mt, [*others, tracks[target]]), mt.eos]


class InfillTask:
    name = "infill"

    def assemble(self, tracks: list[Track], mt: Multitrack, rng: np.random.Generator, cfg: DataConfig) -> list[int]:
        candidates = [i for i, t in enumerate(tracks) if t.bars]
        if not candidates:  # nothing to take out
            return ContinueTask().assemble(tracks, mt, rng, cfg)
        i = int(rng.choice(candidates))
        bars = tracks[i].bars
        lo, hi = cfg.infill_bars
        k = int(rng.integers(min(lo, len(bars)), min(hi, len(bars)) + 1))
        first = int(rng.integers(0, len(bars) - k + 1))
        hole = [np.array([mt.infill_bar])] * k
        holed = [*tracks[:i], Track(tracks[i].header, [*bars[:first], *hole, *bars[first + k :]]), *tracks[i + 1 :]]
        fills = [t for bar in bars[first : first + k] for t in (mt.infill_start, *bar.tolist(), mt.infill_end)]
        return [*sequence(mt, holed), *fills, mt.eos]


TASKS = {task.name: task for task in (ContinueTask(), AccompanyTask(), InfillTask())}


class TaskDataset(Dataset):
    """Task windows over multitrack pieces (see the module's docstring). Items hold the keys of
    WindowDataset's: input_ids, targets (IGNORE_INDEX on padding) and weight."""

    def __init__(
        self,
        pieces: list[np.ndarray],
        tokenizer: miditok.MusicTokenizer,
        cfg: DataConfig,
        train: bool,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
        controls: list[str] | None = None,
    ):
        if not pieces:
            raise DataError("this split of the dataset holds no pieces; prepare more files or change the fractions")
        self.mt = Multitrack(tokenizer)
        self.given = self.mt.is_control.copy()
        self.given[self.mt.infill_bar] = True
        self.tables = TokenTables.from_tokenizer(tokenizer)
        self.cfg, self.train, self.augment_cfg, self.seed = cfg, train, augment_cfg, seed
        self.controls = [name for name in CONTROLS if name in self.mt.controls] if controls is None else controls
        self.tasks = [name for name, weight in cfg.tasks.items() if weight > 0]
        weights = np.array([cfg.tasks[name] for name in self.tasks])
        self.task_p = weights / weights.sum()
        self.pieces = [self.mt.tracks(np.asarray(p, dtype=np.int64)) for p in pieces]
        self.windows: list[tuple[int, int | None, int]] = []  # (piece, first bar or None: at random, bars)
        for i, (piece, ids) in enumerate(zip(self.pieces, pieces, strict=True)):
            bars = max((len(t.bars) for t in piece), default=0)
            if train:  # as many windows per epoch as the piece has seq_len-long stretches; the first opens it
                count = math.ceil((len(ids) + 2) / cfg.seq_len)
                self.windows += [(i, 0, cfg.window_bars)] + [(i, None, cfg.window_bars)] * (count - 1)
            else:
                start = 0
                while start < max(1, bars):
                    n = self._fitting(piece, start, cfg.window_bars, cfg.seq_len)
                    self.windows.append((i, start, n))
                    start += n

    def _fitting(self, piece: list[Track], start: int, most: int, length: int) -> int:
        """The most bars from `start` (at most `most`, at least 1) whose plain window fits length + 1."""
        for n in range(most, 0, -1):
            size = 2 + sum(len(t.header) + 1 + sum(len(b) for b in t.bars[start : start + n]) for t in piece)
            if size <= length + 1:
                return n
        return 1

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, key: int | WindowKey) -> dict[str, torch.Tensor]:
        index, epoch, length = (key, 0, self.cfg.seq_len) if isinstance(key, int) else key
        piece, start, n = self.windows[index]
        tracks = self.pieces[piece]
        if not self.train:
            ids = TASKS["continue"].assemble(self._window(tracks, start, n), self.mt, None, self.cfg)
            return self._pack(ids, length)
        rng = np.random.default_rng([self.seed, epoch, index, length])
        task = self.tasks[int(rng.choice(len(self.tasks), p=self.task_p))]
        bars = max((len(t.bars) for t in tracks), default=1)
        start = start if start is not None else int(rng.integers(0, max(1, bars)))
        build_seed = int(rng.integers(2**32))
        n = self._fitting(tracks, start, n, length)
        window = self._window(tracks, start, n)
        if self.augment_cfg is not None:
            window = self._augmented(window, rng)
        controls = self._controls(window, rng) if self.controls else None
        most = n
        # controls and the task's own tokens may still overflow: fewer bars until it fits (a control's token
        # count does not depend on the bars it describes, so the lengths hold before measuring again)
        while len(ids := self._assemble(task, window, controls, n, build_seed)) > length + 1 and n > 1:
            n -= 1
        if controls is not None and n < most:  # track-level controls describe the bars kept
            for track, chosen in zip(window, controls, strict=True):
                chosen.measure(self.mt, Track(track.header, track.bars[:n]), track_only=True)
            ids = self._assemble(task, window, controls, n, build_seed)
        return self._pack(ids, length)

    def _assemble(
        self, task: str, window: list[Track], controls: list[ChosenControls] | None, n: int, seed: int
    ) -> list[int]:
        """The task's ids for the first n bars of the window, with its controls."""
        shorter = [Track(t.header, t.bars[:n]) for t in window]
        if controls is not None:
            shorter = self._controlled(shorter, controls)
        return TASKS[task].assemble(shorter, self.mt, np.random.default_rng([seed, n]), self.cfg)

    def _pack(self, ids: list[int], length: int) -> dict[str, torch.Tensor]:
        """The item of a window's ids. Controls and Infill_Bar placeholders are given, never predicted
        (generation forces them), so they are no targets: the loss is spent on the music."""
        item = pack(np.asarray(ids[: length + 1]), length, self.mt.pad)
        given = torch.from_numpy(self.given[item["targets"].clamp(min=0).numpy()]) & (item["targets"] != IGNORE_INDEX)
        item["targets"][given] = IGNORE_INDEX
        item["weight"] -= given.sum()
        return item

    @staticmethod
    def _window(tracks: list[Track], start: int, n: int) -> list[Track]:
        return [Track(t.header, t.bars[start : start + n]) for t in tracks]

    def _augmented(self, window: list[Track], rng: np.random.Generator) -> list[Track]:
        """One transposition and velocity shift for the whole window, as single-stream windows get."""
        parts = [part for t in window for part in (t.header, *t.bars)]
        moved = augment(np.concatenate(parts), self.tables, self.augment_cfg, rng)
        cuts = np.split(moved, np.cumsum([len(p) for p in parts])[:-1])
        out, k = [], 0
        for t in window:
            out.append(Track(cuts[k], cuts[k + 1 : k + 1 + len(t.bars)]))
            k += 1 + len(t.bars)
        return out

    def _controls(self, window: list[Track], rng: np.random.Generator) -> list[ChosenControls]:
        """For each track: a random share of its track-level controls and, for each bar-level control, a
        random share of its bars, measured on the window's notes."""
        track_names = [name for name in self.controls if name.startswith("track_")]
        bar_names = [name for name in self.controls if name.startswith("bar_")]
        out = []
        for track in window:
            share = rng.uniform(*self.cfg.control_tracks)
            chosen = ChosenControls(rng.permutation(track_names)[: round(share * len(track_names))].tolist())
            for name in bar_names:
                count = round(rng.uniform(*self.cfg.control_bars) * len(track.bars))
                chosen.bars[name] = set(rng.permutation(len(track.bars))[:count].tolist())
            chosen.measure(self.mt, track)
            out.append(chosen)
        return out

    @staticmethod
    def _controlled(window: list[Track], controls: list[ChosenControls]) -> list[Track]:
        """The window with its chosen controls in place: track-level after the header's Program, bar-level
        after each Bar."""
        out = []
        for track, chosen in zip(window, controls, strict=True):
            header = [t for name in chosen.track for t in chosen.whole.get(name, [])]
            bars = []
            for j, bar in enumerate(track.bars):
                extra = [
                    t
                    for name, where in chosen.bars.items()
                    if j in where
                    for t in chosen.per_bar.get(name, {}).get(j, [])
                ]
                bars.append(np.concatenate([bar[:1], extra, bar[1:]]).astype(np.int64) if extra else bar)
            out.append(Track(np.concatenate([track.header, header]).astype(np.int64), bars))
        return out


@dataclass
class ChosenControls:
    """The controls one track of a window gets, and their token ids measured on its notes."""

    track: list[str]  # track-level controls kept
    bars: dict[str, set[int]] = field(default_factory=dict)  # bar-level control → bars (window-relative) kept
    whole: dict[str, list[int]] = field(default_factory=dict)
    per_bar: dict[str, dict[int, list[int]]] = field(default_factory=dict)

    def measure(self, mt: Multitrack, track: Track, track_only: bool = False) -> None:
        names = [*self.track, *([] if track_only else [n for n, where in self.bars.items() if where])]
        if names:
            whole, per_bar = mt.measure(track, names)
            self.whole = whole
            if not track_only:
                self.per_bar = per_bar
