"""The voice grid (tokenizer.kind VoiceGrid): one frame per onset, one token per voice, note for note."""

import pytest
import symusic

from aurl.config import TokenizerConfig
from aurl.data.corpus import load_file
from aurl.data.grid import HOLD
from aurl.data.prepare import tokenize_score
from aurl.data.tokenize import build_tokenizer
from aurl.generation.generate import tokens_to_score
from tests.conftest import corpus_file, make_midi


@pytest.fixture(scope="module", params=[False, True], ids=["holds", "ties"])
def grid(request):
    settings = {"voice_ties": request.param, "extra": {"remove_duplicated_notes": True}}
    return build_tokenizer(TokenizerConfig(kind="VoiceGrid", **settings))


def _voices(score: symusic.Score, tpq: int) -> list[list[tuple]]:
    """Each track's notes in quarter notes, the tracks by mean pitch, highest first."""
    tracks = sorted(score.tracks, key=lambda t: -sum(n.pitch for n in t.notes) / len(t.notes))
    return [sorted((n.time / tpq, n.duration / tpq, n.pitch) for n in t.notes) for t in tracks]


def test_a_chorale_round_trips_note_for_note(grid):
    """Every voice of a chorale (passing eighths against held quarters, a pickup) comes back note for note, in
    frames of exactly one token per voice (a held note as a hold, or tied with its pitch), about two tokens a
    note."""
    score = load_file(corpus_file("bach/bwv66.6.mxl"), None)[0]
    ids = tokenize_score(grid, score.copy()).tolist()
    back, skipped = tokens_to_score(grid, ids)
    pre = grid.preprocess_score(score.copy())
    assert skipped == 0
    assert _voices(back, back.ticks_per_quarter) == _voices(pre, pre.ticks_per_quarter)
    assert [t.program for t in back.tracks] == grid.voice_programs
    tokens = [grid[i] for i in ids]
    frames = [k for k, t in enumerate(tokens) if t.startswith("Position_")]
    for k in frames:  # a frame: its Position, then one token per voice
        assert all(t.split("_")[0] in ("Pitch", "Tie", "Hold", "Rest") for t in tokens[k + 1 : k + 1 + grid.voices])
    assert (HOLD in tokens) != grid.ties and any(t.startswith("Tie_") for t in tokens) == grid.ties
    assert len(ids) < 2.5 * sum(len(t.notes) for t in pre.tracks)


def test_a_band_file_is_not_a_voice_grid(grid, tmp_path):
    """A file with another number of tracks, or a track playing chords, is refused with the reason."""
    with pytest.raises(ValueError, match="needs 4 tracks; this has 3"):
        tokenize_score(grid, make_midi(tmp_path / "band.mid", seed=1))
    chords = load_file(corpus_file("bach/bwv66.6.mxl"), None)[0]
    chords.tracks[1].notes.append(symusic.Note(chords.tracks[1].notes[0].time, 100, 50, 80))
    with pytest.raises(ValueError, match="plays two notes at once"):
        tokenize_score(grid, chords)


def test_a_broken_frame_counts_as_errors(grid):
    """A frame with a voice missing, a Position going back or a tie of the wrong pitch is counted where MidiTok
    counts errors."""
    score = load_file(corpus_file("bach/bwv66.6.mxl"), None)[0]
    ids = tokenize_score(grid, score).tolist()
    assert tokens_to_score(grid, ids)[1] == 0
    slot = next(k for k, i in enumerate(ids) if grid[i] == HOLD or grid[i].startswith("Tie_"))
    assert tokens_to_score(grid, ids[:slot] + ids[slot + 1 :])[1] > 0
    if grid.ties:  # a tie of a pitch its voice does not sound
        tie = next(k for k, i in enumerate(ids) if grid[i].startswith("Tie_"))
        wrong = grid.vocab[f"Tie_{int(grid[ids[tie]].split('_')[1]) + 1}"]
        assert tokens_to_score(grid, [*ids[:tie], wrong, *ids[tie + 1 :]])[1] > 0
    first, second = [k for k, i in enumerate(ids) if grid[i].startswith("Position_")][2:4]
    assert "Bar_None" not in [grid[i] for i in ids[first:second]]
    assert tokens_to_score(grid, [*ids[:second], ids[first], *ids[second + 1 :]])[1] > 0
