"""Long pieces (a piano performance of several minutes): prepared whole, trained on windows from anywhere
in them, and written thousands of tokens long."""

import math

import numpy as np
import symusic

from aurl.config import load_config
from aurl.data.corpus import split_of
from aurl.data.dataset import PreparedDataset, WindowDataset
from aurl.data.prepare import prepare
from aurl.generation.requests import generate
from aurl.training.run import train
from tests.conftest import TINY, TPQ


def _performance(path, minutes: float = 6.0, seed: int = 0) -> None:
    """Two hands of sixteenth and eighth notes at 120 bpm, random pitches: no window repeats another."""
    rng = np.random.default_rng(seed)
    score = symusic.Score(TPQ)
    piano = symusic.Track(name="piano", program=0)
    end = int(minutes * 120 * TPQ)
    for low, step in ((60, TPQ // 4), (36, TPQ // 2)):
        for t in range(0, end, step):
            piano.notes.append(symusic.Note(t, step, low + int(rng.integers(0, 24)), 80))
    score.tracks.append(piano)
    score.dump_midi(str(path))


def test_a_long_piece_prepares_trains_anywhere_and_long_pieces_are_written(tmp_path):
    (tmp_path / "midi").mkdir()
    names = [f"performance_{k}.mid" for k in range(20)]
    _performance(tmp_path / "midi" / next(n for n in names if split_of(n, 0.5, 0) == "train"))
    _performance(tmp_path / "midi" / next(n for n in names if split_of(n, 0.5, 0) == "valid"), minutes=0.5)
    config = load_config(TINY, ["data.valid_fraction=0.5", "data.test_fraction=0"])
    prepare(str(tmp_path / "midi"), tmp_path / "data", config, progress=False, log=lambda s: None)
    data = PreparedDataset(tmp_path / "data")
    (piece,) = data.pieces("train")
    assert len(piece) > 10_000

    seq_len = config.data.seq_len
    windows = WindowDataset([piece], data.tables, seq_len, train=True)
    assert len(windows) == math.ceil((len(piece) + 2) / seq_len)  # one per seq_len tokens of the piece
    framed = np.concatenate(([data.tables.bos_id], piece, [data.tables.eos_id]))
    at = {framed[i : i + 32].tobytes(): i for i in range(len(framed) - 32)}
    assert len(at) == len(framed) - 32  # every 32 tokens occur once: a window's start is known by its first ones
    starts = {
        at[windows[(i, epoch, seq_len)]["input_ids"].numpy()[:32].tobytes()]
        for epoch in range(3)
        for i in range(len(windows))
    }
    last = len(framed) - seq_len - 1
    assert 0 in starts and max(starts) > 0.95 * last  # from the opening to the very end
    assert len({s * 10 // last for s in starts}) == 10  # every tenth of the piece

    config.data.dataset = str(tmp_path / "data")
    config.train.max_steps, config.train.eval_interval = 3, 3
    train(config, tmp_path / "run", progress=False, log=lambda s: None)
    (sample,) = generate(
        tmp_path / "run", tmp_path / "out", num=1, max_tokens=3000, min_tokens=3000, log=lambda s: None
    )
    assert sample.tokens >= 3000 > 256 == config.model.context  # the window slid
    assert sample.skipped_tokens == 0
    assert sample.notes > 300
