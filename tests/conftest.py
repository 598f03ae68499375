"""Shared fixtures: a small synthetic MIDI corpus, the tiny config, a prepared dataset, a trained run and a full
disk; files of music21's corpus as a user keeps them."""

from __future__ import annotations

import builtins
import errno
import io
import itertools
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import symusic

from aurl.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
TPQ = 480
# torch.compile builds C++ with it; without one, compiled decoding falls back to eager (tested either way)
CXX = bool(os.environ.get("CXX") or shutil.which("g++"))
needs_cxx = pytest.mark.skipif(not CXX, reason="no C++ compiler (g++): compiled decoding cannot be built here")
# A multitrack (MMM) tokenization with every attribute control
MMM = [
    "tokenizer.kind=MMM",
    "tokenizer.controls=[bar_density,bar_polyphony,bar_pitch_class,bar_duration,"
    "track_density,track_polyphony,track_duration,track_repetition]",
    "data.valid_fraction=0.2",
    "data.test_fraction=0.1",
    "data.tasks={continue: 0.4, accompany: 0.3, infill: 0.3}",
]


def make_midi(path: Path, seed: int, bars: int = 12, drums: bool = True) -> symusic.Score:
    """A multi-track piece on an eighth-note grid (exactly representable by the tokenizer), with a
    tempo change and a 4/4 → 3/4 time-signature change half-way."""
    rng = np.random.default_rng(seed)
    score = symusic.Score(TPQ)
    half = bars // 2
    change = half * 4 * TPQ
    score.tempos.append(symusic.Tempo(0, 100.0))
    score.tempos.append(symusic.Tempo(change, 140.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    score.time_signatures.append(symusic.TimeSignature(change, 3, 4))
    end = change + (bars - half) * 3 * TPQ
    scale = [0, 2, 4, 5, 7, 9, 11]
    for name, program, low in (("melody", 0, 60), ("bass", 33, 36)):
        track = symusic.Track(name=name, program=program, is_drum=False)
        t = 0
        while t < end:
            dur = int(rng.choice([TPQ // 2, TPQ, 2 * TPQ]))
            pitch = low + int(rng.choice(scale)) + 12 * int(rng.integers(0, 2))
            track.notes.append(symusic.Note(t, min(dur, end - t), pitch, 90))
            t += dur
        score.tracks.append(track)
    if drums:
        kit = symusic.Track(name="drums", program=0, is_drum=True)
        for t in range(0, end, TPQ):
            kit.notes.append(symusic.Note(t, TPQ // 2, 36 if (t // TPQ) % 2 == 0 else 38, 90))
        score.tracks.append(kit)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return score


def lopsided_folder(folder: Path, train: int, test: int) -> list[str]:
    """A folder of short pieces whose names the hash split (at the default fractions) puts `train` in train,
    `test` in test and none in valid, as it does to small real folders; returns their names."""
    from aurl.data.corpus import split_of

    wanted, names = {"train": train, "test": test}, []
    for i in itertools.count():
        name = f"song_{i:03d}.mid"
        split = split_of(name, 0.05, 0.05)
        if wanted.get(split, 0) > 0:
            wanted[split] -= 1
            make_midi(folder / name, seed=i, bars=4)
            names.append(name)
        if not any(wanted.values()):
            return names


def corpus_file(name: str) -> Path:
    """A file of music21's corpus."""
    from music21 import common

    return Path(common.getCorpusFilePath()) / name


def abc_tune(folder: Path) -> Path:
    """A folk song of music21's corpus (tune 5 of Essen's ballad30.abc, 30 notes in 3/4 opening with a pickup)
    in an ABC file of its own, as a musician keeps one tune."""
    text = corpus_file("essenFolksong/ballad30.abc").read_text(encoding="utf-8", errors="replace")
    path = folder / "ritter.abc"
    path.write_text(next(tune for tune in re.split(r"(?m)^(?=X:)", text) if re.match(r"X:\s*5\s", tune)))
    return path


# A MusicXML score whose one part holds a bar's rest and no note
EMPTY_SCORE = (
    '<?xml version="1.0"?><score-partwise version="3.1"><part-list><score-part id="P1"><part-name>Flute'
    '</part-name></score-part></part-list><part id="P1"><measure number="1"><note><rest/><duration>4'
    "</duration></note></measure></part></score-partwise>"
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("AURL_CACHE", str(tmp_path_factory.getbasetemp() / "aurl-cache"))


@pytest.fixture(scope="session")
def tiny_config() -> Config:
    return load_config(TINY)


@pytest.fixture(scope="session")
def midi_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("midi")
    for i in range(10):
        make_midi(folder / f"piece_{i}.mid", seed=i)
    return folder


@pytest.fixture(scope="session")
def prepared(midi_dir, tiny_config, tmp_path_factory) -> Path:
    from aurl.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    prepare(str(midi_dir), out, _with_splits(tiny_config), progress=False, log=lambda s: None)
    return out


@pytest.fixture(scope="session")
def trained_run(prepared, tiny_config, tmp_path_factory) -> Path:
    from aurl.training.run import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    config = _with_splits(tiny_config).model_copy(deep=True)
    config.data.dataset = str(prepared)
    config.data.tasks = {"continue": 0.4, "accompany": 0.3, "infill": 0.3}  # co-creation, anticipated
    train(config, run, progress=False, log=lambda s: None)
    return run


@pytest.fixture(scope="session")
def mmm_prepared(midi_dir, tmp_path_factory) -> Path:
    from aurl.data.prepare import prepare

    out = tmp_path_factory.mktemp("mmm")
    prepare(str(midi_dir), out, load_config(TINY, MMM), progress=False, log=lambda s: None)
    return out


@pytest.fixture(scope="session")
def mmm_run(mmm_prepared, tmp_path_factory) -> Path:
    """A tiny multitrack run trained on the task mix with controls."""
    from aurl.training.run import train

    run = tmp_path_factory.mktemp("runs") / "mmm"
    sets = [f"data.dataset={mmm_prepared}", "data.seq_len=256", "model.context=512", "data.window_bars=4"]
    sets += ["train.max_steps=40", "train.batch_tokens=1024", "train.peak_flops=1e11"]
    train(load_config(TINY, [*MMM, *sets]), run, progress=False, log=lambda s: None)
    return run


def random_session(run: Path, seed: int):
    """A generation session of the run's latest checkpoint with random weights: whatever the model wants, what
    the grammar holds must hold."""
    import torch

    from aurl.generation.generate import Trained
    from aurl.generation.session import Session

    trained = Trained.load(run, "latest")
    session = Session(trained, trained.settings({"num": 4, "seed": seed}))
    torch.manual_seed(0)
    for p in session.decoder.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return session


def _with_splits(config: Config) -> Config:
    """Ten files need larger held-out fractions than the default to put one in each split."""
    from aurl.config import build_config

    tree = config.model_dump(mode="json")
    tree["data"].update(valid_fraction=0.2, test_fraction=0.1)
    return build_config(tree)


def tiny_trainer(prepared: Path, run_dir: Path, overrides: list[str] | None = None):
    """A Trainer over the prepared fixture dataset, built the way `aurl train` builds it."""
    from aurl.data.dataset import PreparedDataset
    from aurl.training.distributed import DistEnv
    from aurl.training.run import build_trainer

    config = load_config(TINY, [f"data.dataset={prepared}", "train.peak_flops=1e11", *(overrides or [])])
    run_dir.mkdir(parents=True, exist_ok=True)
    data = PreparedDataset(prepared)
    return build_trainer(config, data, run_dir, DistEnv(), __import__("torch").device("cpu"), False, lambda s: None)


# A full disk, simulated in the test process: every file opened for writing whose path contains a given text
# goes through a wrapper that writes what fits in the bytes left, then fails with ENOSPC, as a real full disk
# does.
class FullDisk:
    """`free` bytes left for files whose path contains `match`, counted once `when()` is true; `undo()`
    frees the space."""

    def __init__(self, match: str, free: int, when: Callable[[], bool] = lambda: True):
        self.free, self.when = free, when
        self.failed = ""  # the file whose write did not fit
        real = builtins.open

        def open_(file, mode="r", *args, **kwargs):
            handle = real(file, mode, *args, **kwargs)
            writes = any(c in mode for c in "wax+")
            return _Filling(handle, self, str(file)) if writes and match in str(file) else handle

        self.patch = pytest.MonkeyPatch()
        self.patch.setattr(builtins, "open", open_)
        self.patch.setattr(io, "open", open_)  # pathlib's write_text and write_bytes

    def undo(self) -> None:
        self.patch.undo()

    def take(self, size: int) -> int:
        """Bytes of `size` that fit; 0 bytes left after a write that did not fit."""
        if not self.when():
            return size
        fits = min(size, self.free)
        self.free -= fits
        return fits


class _Filling:
    def __init__(self, handle, disk: FullDisk, name: str):
        self.handle, self.disk, self.name = handle, disk, name

    def write(self, data):
        fits = self.disk.take(len(data))
        if fits < len(data):
            self.handle.write(data[:fits])
            self.handle.flush()
            self.disk.failed = self.name
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


@pytest.fixture
def full_disk():
    disks: list[FullDisk] = []

    def make(match: str, free: int, when: Callable[[], bool] = lambda: True) -> FullDisk:
        disks.append(FullDisk(match, free, when))
        return disks[-1]

    yield make
    for disk in disks:
        disk.undo()
