import symusic

from aurl.data.controls import CONTROLS, controls_of
from aurl.data.prepare import tokenize_score
from aurl.data.tokenize import build_tokenizer, load_tokenizer, save_tokenizer, tokenizer_hash
from tests.conftest import make_midi


def _notes(score: symusic.Score) -> set[tuple]:
    """(drum?, program, pitch, onset, duration) with times in quarter notes."""
    tpq = score.ticks_per_quarter
    return {
        (t.is_drum, t.program if not t.is_drum else -1, n.pitch, n.time / tpq, n.duration / tpq)
        for t in score.tracks
        for n in t.notes
    }


def test_round_trip_keeps_every_note_tempo_and_time_signature(tmp_path, tiny_config):
    original = make_midi(tmp_path / "a.mid", seed=3)
    tokenizer = build_tokenizer(tiny_config.tokenizer)
    ids = tokenize_score(tokenizer, symusic.Score(str(tmp_path / "a.mid")))
    decoded = tokenizer.decode(ids.tolist())
    assert _notes(decoded) == _notes(original)
    assert len(decoded.tracks) == 3  # melody, bass and drums come back apart
    tpq = decoded.ticks_per_quarter
    signatures = [(ts.time / tpq, ts.numerator, ts.denominator) for ts in decoded.time_signatures]
    assert signatures == [(0.0, 4, 4), (24.0, 3, 4)]
    tempos = [(round(t.time / tpq, 3), t.qpm) for t in decoded.tempos]
    # MidiTok quantises tempo to num_tempos bins over tempo_range: within one bin of the truth.
    bin_width = (250 - 40) / 31
    assert [t for t, _ in tempos] == [0.0, 24.0]
    assert abs(tempos[0][1] - 100) <= bin_width and abs(tempos[1][1] - 140) <= bin_width


def test_tokenizer_saved_with_the_data_loads_identically(tmp_path, tiny_config):
    tokenizer = build_tokenizer(tiny_config.tokenizer)
    save_tokenizer(tokenizer, tmp_path)
    assert tokenizer_hash(load_tokenizer(tmp_path)) == tokenizer_hash(tokenizer)
    other = build_tokenizer(tiny_config.tokenizer.model_copy(update={"use_velocities": True}))
    assert tokenizer_hash(other) != tokenizer_hash(tokenizer)


def test_a_time_ordered_tokenizer_keeps_its_controls_when_saved(tmp_path, tiny_config):
    """MidiTok switches controls off for one stream of programs: aurl attaches them, after the base vocabulary,
    and a saved tokenizer loads with the same ids and the same MidiTok objects."""
    plain = build_tokenizer(tiny_config.tokenizer)
    steered = build_tokenizer(tiny_config.tokenizer.model_copy(update={"controls": list(CONTROLS)}))
    assert sorted(controls_of(steered)) == sorted(CONTROLS) and not controls_of(plain)
    assert all(steered.vocab[token] == i for token, i in plain.vocab.items())  # prepared ids stay what they were
    save_tokenizer(steered, tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.vocab == steered.vocab and tokenizer_hash(loaded) == tokenizer_hash(steered)
    assert [type(c) for c in loaded.attribute_controls] == [type(c) for c in steered.attribute_controls]
