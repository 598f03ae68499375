"""Co-creation with onset frames (tokenizer.holds): the given voices restated at every onset the model opens,
every task writing notes that all decode, the given ones unchanged."""

import pytest
import symusic
from miditok.utils import get_bars_ticks

from aurl.config import load_config
from aurl.data.frames import Frames
from aurl.data.layout import task_ids
from aurl.data.prepare import prepare
from aurl.generation.generate import Trained, tokens_to_score
from aurl.generation.given import plan_of
from aurl.generation.requests import Accompany, Generate, Infill, generate
from aurl.generation.timed import read_timed_song
from aurl.training.run import train
from tests.conftest import TINY, random_session


@pytest.fixture(scope="module")
def held_run(midi_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("held")
    sets = ["tokenizer.holds=true", "data.tasks={continue: 0.4, accompany: 0.3, infill: 0.3}"]
    config = load_config(TINY, [*sets, "data.valid_fraction=0.2", "data.test_fraction=0.1"])
    prepare(str(midi_dir), folder / "data", config, progress=False, log=lambda s: None)
    config.data.dataset = str(folder / "data")
    train(config, folder / "run", progress=False, log=lambda s: None)
    return folder / "run"


def _given_holds(frames: Frames, ids: list[int], given: set[int]) -> list[list[int]]:
    """Per onset, the given programs restated there."""
    onsets = (onset for bar in frames.layout.bars(ids) for onset in bar.onsets)
    return [[n.program for n in onset.notes if n.hold and n.program in given] for onset in onsets]


def test_an_untrained_model_restates_the_given_voices_wherever_it_opens_an_onset(held_run, midi_dir):
    """Random weights: in an infill of one voice, every onset the model writes holds each given voice that
    sounds through it (forced), exactly as restating the written result would put them."""
    session = random_session(held_run, 5)
    tokenizer, layout = session.tokenizer, session.layout
    frames = Frames(tokenizer)
    song = read_timed_song(midi_dir / "piece_6.mid", tokenizer, layout)
    gap = range(3, 5)

    def given(bar: int, program: int) -> bool:
        return bar not in gap or program != 0

    plan = plan_of(layout, song.bars, gap, given, [0])
    prompt = [tokenizer["BOS_None"], *layout.head("infill", song.bars, gap, given, session.room).ids]
    others = {n.program for bar in song.bars for o in bar.onsets for n in o.notes if n.program != 0}
    opened = 0
    for row in session.write([prompt] * 4, [plan], 300 + plan.forced):
        written = layout.played(row[:-1])  # the gap's bars (the next bar's Bar dropped), without their blocks
        stream = [*(t for bar in song.bars[: gap.start] for t in layout.plain(bar)), *written]
        assert tokens_to_score(tokenizer, stream)[1] == 0
        assert _given_holds(frames, stream, others) == _given_holds(frames, frames.restate(stream), others)
        opened += sum(1 for held in _given_holds(frames, written, others) if held)
    assert opened > 0


@pytest.mark.parametrize("sweeps", [0, 1])
def test_every_task_writes_with_holds(held_run, midi_dir, tmp_path, sweeps):
    """A free piece, an accompaniment and an infill (revised by a sweep) all decode with 0 skipped tokens and
    keep what is given note for note."""
    song = midi_dir / "piece_5.mid"
    original = symusic.Score(str(song))
    ticks = get_bars_ticks(original)
    requests = [Accompany(song=str(song), add=[48], keep=[1]), Infill(song=str(song), bars=(3, 4), track=0)]
    if not sweeps:
        requests.append(Generate())
    for request in requests:
        out = tmp_path / f"{request.task}{sweeps}"
        samples = generate(held_run, out, "latest", None, request, num=2, max_tokens=200, sweeps=sweeps)
        for s in samples:
            score = symusic.Score(str(s.midi))
            assert s.skipped_tokens == 0 and s.notes > 0
            if isinstance(request, Infill):
                kept = sorted((n.time, n.pitch) for n in original.tracks[1].notes)
                assert sorted((n.time, n.pitch) for n in score.tracks[1].notes) == kept
                outside = [(n.time, n.pitch) for n in original.tracks[0].notes if not ticks[2] <= n.time < ticks[4]]
                assert [(n.time, n.pitch) for n in score.tracks[0].notes if not ticks[2] <= n.time < ticks[4]] == (
                    outside
                )
            if isinstance(request, Accompany):
                assert sorted((n.time, n.pitch) for n in score.tracks[0].notes) == sorted(
                    (n.time, n.pitch) for n in original.tracks[1].notes
                )
    assert task_ids(Trained.load(held_run, "latest").tokenizer, "free")
