from collections import Counter

import symusic

from aurl.cli import main
from aurl.generation.generate import primer_tokens, tokens_to_score
from aurl.generation.requests import Continue, generate
from aurl.training.run import load_trained


def _notes(score: symusic.Score) -> Counter:
    return Counter((int(n.time), int(n.pitch), int(n.duration)) for t in score.tracks for n in t.notes)


def test_a_continuation_holds_the_primer_and_then_new_music(trained_run, midi_dir, tmp_path):
    _, tokenizer, _ = load_trained(trained_run, "latest")
    primer = midi_dir / "piece_3.mid"
    ids, _, _ = primer_tokens(primer, tokenizer, 2)
    head = tokens_to_score(tokenizer, ids)[0]  # the primer's bars as the tokenizer sees them
    expected = _notes(head)
    quiet = {"log": lambda s: None}
    going_on = Continue(song=str(primer))
    samples = generate(trained_run, tmp_path, "latest", request=going_on, primer_bars=2, num=2, max_tokens=200, **quiet)
    for sample in samples:
        score = symusic.Score(str(sample.midi))
        notes = _notes(score)
        assert not expected - notes  # every primer note is there, unchanged
        assert sum(notes.values()) > sum(expected.values())  # and the piece goes on
        assert sample.skipped_tokens == 0
        assert score.tempos[0].qpm == head.tempos[0].qpm  # the primer's tempo is kept
        assert score.time_signatures[0] == head.time_signatures[0]


def test_pieces_run_past_the_context_and_decode_cleanly(trained_run, tmp_path):
    # the tiny model's context is 256 tokens; the window slides to write 600
    samples = generate(trained_run, tmp_path, "latest", num=3, max_tokens=600, min_tokens=400, log=lambda s: None)
    assert min(s.tokens for s in samples) > 400
    assert [s.skipped_tokens for s in samples] == [0, 0, 0]
    assert all(s.notes > 0 for s in samples)


def test_generate_command_with_sampling_options_and_wav(trained_run, midi_dir, tmp_path, capsys):
    args = ["generate", "--run", str(trained_run), "--out", str(tmp_path), "--num", "2", "--max-tokens", "64"]
    extra = ["--min-p", "0.05", "--repetition-penalty", "1.2", "--max-bars", "2", "--batch-size", "1", "--wav"]
    assert main([*args, *extra]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"sample_{i}.{ext}" for i in range(2) for ext in ("mid", "png", "wav")
    ]
    assert main([*args, "--primer", str(tmp_path / "missing.mid")]) == 2
    assert "missing.mid: no such MIDI file" in capsys.readouterr().err
    assert main([*args, "--min-bars", "3", "--max-bars", "2"]) == 2  # the flag reaches the request's settings
    assert "min_bars (3) must not exceed" in capsys.readouterr().err


def test_a_tokenizer_without_programs_writes_one_track_that_decodes(midi_dir, tmp_path, capsys):
    from aurl.config import load_config
    from aurl.data.prepare import prepare
    from aurl.training.run import train
    from tests.conftest import TINY

    sets = ["tokenizer.use_programs=false", "data.valid_fraction=0.2", "train.max_steps=3", "train.eval_interval=3"]
    config = load_config(TINY, sets)
    prepare(str(midi_dir), tmp_path / "data", config, progress=False, log=lambda s: None)
    config.data.dataset = str(tmp_path / "data")
    train(config, tmp_path / "run", progress=False, log=lambda s: None)
    for sample in generate(tmp_path / "run", tmp_path / "out", num=2, min_tokens=64, log=lambda s: None):
        assert sample.skipped_tokens == 0 and sample.notes > 0
        assert len(symusic.Score(str(sample.midi)).tracks) == 1
    # co-creation needs tracks told apart in the stream
    args = ["generate", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "co")]
    assert main([*args, "--accompany", str(midi_dir / "piece_1.mid"), "--add", "33"]) == 2
    assert "needs a run trained with tokenizer.kind REMI and use_programs" in capsys.readouterr().err


def _meters(path) -> list[tuple[int, int]]:
    """The time signature of each bar line where it changes, as the MIDI file says."""
    return [(ts.numerator, ts.denominator) for ts in symusic.Score(str(path)).time_signatures]


def test_a_piece_keeps_one_meter_unless_asked_otherwise(trained_run, midi_dir, tmp_path):
    """The tiny model learned pieces that change from 4/4 to 3/4 half-way; by default each piece keeps the
    meter of its first bar (a primer's when continuing), --meter chooses one, free lets it change."""
    quiet = {"log": lambda s: None, "num": 4, "min_tokens": 400, "max_tokens": 500}
    free = generate(trained_run, tmp_path / "free", "latest", meter="free", **{**quiet, "num": 8})
    assert any(len(set(_meters(s.midi))) > 1 for s in free)  # the model does change meter when let
    held = generate(trained_run, tmp_path / "held", "latest", **quiet)
    assert [len(set(_meters(s.midi))) for s in held] == [1] * 4
    chosen = generate(trained_run, tmp_path / "chosen", "latest", meter="3/4", **quiet)
    assert all(set(_meters(s.midi)) == {(3, 4)} for s in chosen)
    primer = midi_dir / "piece_3.mid"  # 4/4 for its first six bars
    going_on = generate(
        trained_run, tmp_path / "cont", "latest", request=Continue(song=str(primer)), **quiet, primer_bars=2
    )
    assert all(set(_meters(s.midi)) == {(4, 4)} for s in going_on)
    assert all(s.skipped_tokens == 0 for s in [*free, *held, *chosen, *going_on])


def test_a_meter_the_run_cannot_write_is_named(trained_run, tmp_path, capsys):
    args = ["generate", "--run", str(trained_run), "--out", str(tmp_path), "--num", "1", "--max-tokens", "16"]
    assert main([*args, "--meter", "7/16"]) == 2
    assert "--meter 7/16: not a time signature this run writes" in capsys.readouterr().err
    assert main([*args, "--meter", "three"]) == 2
    assert "meter: expected hold, free or a time signature such as 3/4 (got 'three')" in capsys.readouterr().err
    assert main([*args, "--meter", "3/4", "--unconstrained"]) == 2
    assert "--meter 3/4: the grammar holds a meter; leave constrained on" in capsys.readouterr().err
    assert main([*args, "--meter", "3/4"]) == 0
