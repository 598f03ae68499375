"""Infilling from both sides (fill-in-the-middle) and revision sweeps in the time-ordered stream: a model trained
on copies reads the block of the bars after a gap, sweeps keep what is given, and a run from before task tokens
and blocks still works."""

from pathlib import Path

import numpy as np
import pytest
import symusic
import torch
import yaml
from miditok.utils import get_bars_ticks

from aurl.config import load_config
from aurl.data import tokenize
from aurl.data.layout import AHEAD_TOKENS, TASK_TOKENS, run_layout
from aurl.data.prepare import prepare, tokenize_score
from aurl.errors import ConfigError
from aurl.evaluation.likelihood import written_nll
from aurl.generation.generate import Trained
from aurl.generation.given import plan_of
from aurl.generation.requests import Accompany, Generate, Infill, generate
from aurl.generation.sweeps import FINAL, spans, temperatures
from aurl.generation.timed import read_timed_song
from aurl.training.run import train
from tests.conftest import TINY, TPQ, random_session


def _copies(folder: Path, count: int, seed: int) -> None:
    """Pieces of six equal 4/4 bars, each bar four quarter notes drawn once per piece: a gap's bars equal the
    bars after it."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        score = symusic.Score(TPQ)
        score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
        track = symusic.Track(program=0)
        pitches = rng.choice(np.arange(60, 72), size=4)
        for bar in range(6):
            for beat, pitch in enumerate(pitches):
                track.notes.append(symusic.Note((4 * bar + beat) * TPQ, TPQ, int(pitch), 90))
        score.tracks.append(track)
        score.dump_midi(str(folder / f"copy_{i:03d}.mid"))


def test_an_infill_reads_the_bars_after_its_gap(tmp_path):
    """The copy check: the first two bars of unseen pieces cost far fewer bits with the bars after them in the
    block than with the pieces cut after the gap (the left side alone: here nothing). Without anticipation,
    only the block carries what follows the gap: drop it from the layout and the two cost the same."""
    _copies(tmp_path / "midi", 64, seed=0)
    sets = ["data.tasks={infill: 1}", "data.ahead_bars=0", "data.seq_len=128", "data.augment.transpose=[0, 0]"]
    sets += ["data.valid_fraction=0.1", "data.test_fraction=0.1", "model.d_model=64", "train.lr=5e-3"]
    sets += ["train.max_steps=300", "train.batch_tokens=1024", "train.eval_interval=300", "train.save_interval=300"]
    config = load_config(TINY, [*sets, "train.sample_interval=0"])
    prepare(str(tmp_path / "midi"), tmp_path / "data", config, progress=False, log=lambda s: None)
    config.data.dataset = str(tmp_path / "data")
    train(config, tmp_path / "run", progress=False, log=lambda s: None)
    trained = Trained.load(tmp_path / "run", "latest")
    layout = run_layout(trained.tokenizer, trained.config.data)
    bos, gap = trained.tokenizer["BOS_None"], range(0, 2)
    _copies(tmp_path / "unseen", 8, seed=1)
    both = left = 0.0
    for path in sorted((tmp_path / "unseen").glob("*.mid")):
        bars = layout.bars(tokenize_score(trained.tokenizer, symusic.Score(str(path))))
        for cut, into in ((len(bars), "both"), (gap.stop, "left")):
            nats = written_nll(trained.model, bos, layout.window("infill", bars[:cut], gap, lambda b, p: b not in gap))
            both, left = (both + nats, left) if into == "both" else (both, left + nats)
    assert both < 0.5 * left, f"both sides {both:.1f} nats, the left side alone {left:.1f}"


def test_sweeps_anneal_and_cut_the_bars_into_spans_of_one_or_two():
    assert temperatures(1.0, 1) == [1.0]
    assert temperatures(0.8, 3) == pytest.approx([0.8, 0.8 * FINAL**0.5, 0.8 * FINAL])
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        found = spans((3, 12), generator)
        assert [b for first, last in found for b in range(first, last + 1)] == list(range(3, 13))
        assert {last - first for first, last in found} <= {0, 1}


def test_sweeps_keep_what_is_given_and_each_version_when_asked(trained_run, midi_dir, tmp_path):
    """Two sweeps over an accompaniment and an infill: every version (the first pass, after the first sweep)
    and the last take keep the kept track and everything outside the bars note for note; a line per sweep."""
    song = midi_dir / "piece_5.mid"
    original = symusic.Score(str(song))
    ticks = get_bars_ticks(original)
    lines: list[str] = []
    requests = [
        (Accompany(song=str(song), keep=[1], add=[48]), 0, 2**31),
        (Infill(song=str(song), bars=(3, 5)), *ticks[2:6:3]),
    ]
    for request, start, stop in requests:
        out = tmp_path / request.task
        samples = generate(
            trained_run, out, "latest", lines.append, request, num=1, max_tokens=200, sweeps=2, keep_sweeps=True
        )
        assert [s.skipped_tokens for s in samples] == [0]
        versions = [out / "sample_0_sweep_0.mid", out / "sample_0_sweep_1.mid", out / "sample_0.mid"]
        for path in versions:
            take = symusic.Score(str(path))
            if request.task == "accompany":
                assert _notes(take.tracks[0]) == _notes(original.tracks[1])
            else:
                for old, new in zip(original.tracks, take.tracks, strict=True):
                    assert [n for n in _notes(new) if not start <= n[0] < stop] == [
                        n for n in _notes(old) if not start <= n[0] < stop
                    ]
    assert sum("sweep 1/2" in line for line in lines) == sum("sweep 2/2" in line for line in lines) == 2


def _notes(track) -> list[tuple[int, int, int]]:
    return sorted((n.time, n.duration, n.pitch) for n in track.notes)


@pytest.fixture(scope="module")
def old_run(midi_dir, tmp_path_factory) -> Path:
    """A run from before task tokens and blocks: its vocabulary holds the anticipation block alone."""
    folder = tmp_path_factory.mktemp("old")
    patch = pytest.MonkeyPatch()
    patch.setattr(tokenize, "LAYOUT_TOKENS", list(AHEAD_TOKENS))
    try:
        sets = ["data.tasks={continue: 0.4, accompany: 0.3, infill: 0.3}"]
        config = load_config(TINY, [*sets, "data.valid_fraction=0.2", "data.test_fraction=0.1"])
        prepare(str(midi_dir), folder / "data", config, progress=False, log=lambda s: None)
        config.data.dataset = str(folder / "data")
        train(config, folder / "run", progress=False, log=lambda s: None)
    finally:
        patch.undo()
    saved = yaml.safe_load((folder / "run" / "config.yaml").read_text())  # as such a run saved its settings
    del saved["generate"]["sweeps"], saved["generate"]["keep_sweeps"]
    saved["generate"]["passes"] = 1  # the first pass alone
    (folder / "run" / "config.yaml").write_text(yaml.safe_dump(saved))
    return folder / "run"


def test_a_run_from_before_task_tokens_still_writes(old_run, midi_dir, tmp_path):
    """It loads (its `passes: 1` are no sweeps), its free pieces open with BOS alone, its infills read the left
    side alone (no block), and every task writes notes that all decode."""
    trained = Trained.load(old_run, "latest")
    assert trained.config.generate.sweeps == 0
    assert not set(TASK_TOKENS.values()) & set(trained.tokenizer.vocab)
    assert run_layout(trained.tokenizer, trained.config.data).suffix == 0
    song = str(midi_dir / "piece_5.mid")
    for request in (Generate(), Accompany(song=song, keep=[1], add=[48]), Infill(song=song, bars=(3, 4), track=0)):
        samples = generate(trained, tmp_path / request.task, request=request, log=None, num=1, max_tokens=200)
        assert all(s.notes > 0 and s.skipped_tokens == 0 for s in samples)


def test_a_request_ends_as_the_song_goes_on_whatever_the_model_wants(trained_run, midi_dir):
    """Random weights: an infill inside the song writes its bars and the next bar's Bar, then ends; one at the
    song's end writes its bars and ends; every bar's meter is the song's."""
    session = random_session(trained_run, 3)
    layout = session.layout
    song = read_timed_song(midi_dir / "piece_6.mid", session.tokenizer, layout)
    for gap in (range(3, 5), range(len(song.bars) - 2, len(song.bars))):

        def given(bar: int, program: int, gap: range = gap) -> bool:
            return bar not in gap or program != 0

        plan = plan_of(layout, song.bars, gap, given, [0])
        prompt = [session.tokenizer["BOS_None"], *layout.head("infill", song.bars, gap, given, session.room).ids]
        goes_on = gap.stop < len(song.bars)
        assert plan.goes_on == goes_on
        for row in session.write([prompt] * 4, [plan], 200 + plan.forced):
            opened = [i for i, t in enumerate(row) if t == layout.bar]
            assert len(opened) == len(gap) + goes_on and (row[-1] == layout.bar) == goes_on
            assert [row[i + 1] for i in opened[: len(gap)]] == [song.bars[b].head[1] for b in gap]


def test_each_task_takes_its_own_defaults_where_a_request_gives_none(trained_run):
    """generate.tasks: a harmonisation is cooler than a free piece unless the request says otherwise; a setting
    that is not one is named."""
    trained = Trained.load(trained_run, "latest")
    assert trained.settings({}, "generate").temperature == trained.config.generate.temperature == 1.0
    assert trained.settings({}, "accompany").temperature == trained.settings({}, "infill").temperature == 0.7
    assert trained.settings({"temperature": 0.9}, "accompany").temperature == 0.9
    with pytest.raises(ConfigError, match="generate.tasks: accompany: warmth not a generate setting"):
        load_config(TINY, ["generate.tasks={accompany: {warmth: 1}}"])
