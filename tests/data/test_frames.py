"""Onset frames (tokenizer.holds): every voice sounding through an onset restated there, nothing else changed."""

import pytest
import symusic

from aurl.config import TokenizerConfig, load_config
from aurl.data.corpus import load_file
from aurl.data.frames import Frames
from aurl.data.layout import HOLD
from aurl.data.prepare import tokenize_score
from aurl.data.tokenize import build_tokenizer
from aurl.errors import ConfigError
from aurl.generation.generate import tokens_to_score
from tests.conftest import TINY, corpus_file, make_midi


def _notes(score: symusic.Score) -> list[tuple]:
    return sorted((t.program, t.is_drum, n.time, n.duration, n.pitch) for t in score.tracks for n in t.notes)


@pytest.fixture(scope="module")
def tokenizers():
    settings = {"use_velocities": False, "extra": {"remove_duplicated_notes": True}}
    return build_tokenizer(TokenizerConfig(**settings)), build_tokenizer(TokenizerConfig(**settings, holds=True))


def _chorale() -> symusic.Score:
    """Four voices, passing eighths against held quarters."""
    return load_file(corpus_file("bach/bwv66.6.mxl"), None)[0]


@pytest.mark.parametrize("source", ["chorale", "band"])
def test_holds_round_trip_note_for_note(tokenizers, tmp_path, source):
    """A chorale and a band file with drums decode to the same notes with hold pairs as without, restating is
    idempotent, and taking the pairs out gives MidiTok's own stream back."""
    plain, held = tokenizers
    score = _chorale() if source == "chorale" else make_midi(tmp_path / "band.mid", seed=4)
    a, b = tokenize_score(plain, score.copy()).tolist(), tokenize_score(held, score.copy()).tolist()
    frames = Frames(held)
    assert len(b) > len(a)
    assert frames.restate(b) == b
    without = [held[t] for t in frames.unstate(b)]
    assert without == [plain[t] for t in a]
    (decoded, skipped), (expected, _) = tokens_to_score(held, b), tokens_to_score(plain, a)
    assert skipped == 0 and _notes(decoded) == _notes(expected)


def test_a_hold_pair_stands_where_a_voice_sounds_on(tokenizers):
    """At each onset a voice that started before and still sounds is restated, one that is silent or starts
    there is not; drums are never held."""
    _, held = tokenizers
    frames = Frames(held)
    ids = tokenize_score(held, _chorale()).tolist()
    bars = frames.layout.bars(ids)
    starts: dict[int, list] = {}  # program → (start, end) of its notes, in whole notes
    checked = 0
    for bar, begin, (_, den) in frames.timeline(bars):
        for onset in bar.onsets:
            at = begin + frames.layout.value[onset.position] / (frames.per_beat * den)
            for note in onset.notes:
                if note.hold:
                    lo, hi = starts[note.program][-1]
                    assert lo < at < hi
                    checked += 1
            sounding = {p for p, spans in starts.items() if spans[-1][0] < at < spans[-1][1]}
            assert sounding <= {n.program for n in onset.notes}
            for note in onset.notes:
                if not note.hold:
                    starts.setdefault(note.program, []).append((at, at + frames.length(note, den)))
    assert checked > 10


def test_holds_need_the_time_ordered_stream():
    with pytest.raises(ConfigError, match="tokenizer.holds"):
        load_config(TINY, ["tokenizer.holds=true", "tokenizer.use_programs=false"])
    with pytest.raises(ConfigError, match="tokenizer.holds"):
        load_config(TINY, ["tokenizer.holds=true", "tokenizer.bpe_vocab_size=400"])
    assert HOLD in build_tokenizer(load_config(TINY, ["tokenizer.holds=true"]).tokenizer).vocab
    assert HOLD not in build_tokenizer(load_config(TINY).tokenizer).vocab
