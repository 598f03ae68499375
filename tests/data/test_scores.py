"""Scores in notation wherever a MIDI file goes in (aurl.data.scores): files of music21's corpus read note for
note as music21 reads them, each note on music21's beat; aurl's own MusicXML read back as the MIDI file it was
written from; a folder mixing formats prepared, an ABC file of several tunes a piece each, a broken or empty
score rejected with its reason and nothing else lost."""

import json
from pathlib import Path

import pytest
import symusic

from aurl.data.corpus import read_score
from aurl.data.prepare import prepare
from aurl.errors import DataError
from aurl.notation import musicxml
from benchmarks.bars import midi_beats, paired, score_beats
from tests.conftest import EMPTY_SCORE, corpus_file, make_midi

QUIET = {"progress": False, "log": lambda s: None}


# A chorale as compressed MusicXML, opening with a one-beat pickup in 4/4; an ABC folk song opening with a
# pickup of a dotted quarter in 3/4 (tune 5 of a file of many).
ON_BEAT = [("bach/bwv66.6.mxl", None, 3.0), ("essenFolksong/ballad30.abc", 5, 1.5)]


@pytest.mark.parametrize(("name", "number", "later"), ON_BEAT)
def test_a_score_is_read_note_for_note_each_note_on_its_beat(name, number, later, tmp_path):
    """Each part's pitches and onsets are music21's for the score with its repeats played out (as its MIDI
    writer plays them), the pickup written as the end of a full first bar (`later` quarters in), and each
    note's beat in its bar of the MIDI file is music21's `beat` for it."""
    from music21 import converter

    expected = score_beats(converter.parse(corpus_file(name), number=number).expandRepeats())
    read_score(corpus_file(name), number).dump_midi(str(tmp_path / "read.mid"))
    written = midi_beats(tmp_path / "read.mid")
    pairs, unmatched = paired(expected, written)
    assert len(pairs) >= 30 and unmatched == 0
    assert [got[0] for _, got in pairs] == pytest.approx([want[0] + later for want, _ in pairs])
    assert [got[2] for _, got in pairs] == pytest.approx([want[2] for want, _ in pairs])


def test_voices_take_the_runs_programs_and_instruments_keep_theirs():
    """The chorale's parts name voices, no instrument: by default the built-in corpora's (as builtin:bach-chorales
    converts it), else a run's voices from the top, the lowest voice its lowest."""
    chorale = corpus_file("bach/bwv66.6.mxl")
    assert [t.program for t in read_score(chorale).tracks] == [40, 41, 42, 43]
    assert [t.program for t in read_score(chorale, voices=[0, 33]).tracks] == [0, 48, 49, 33]
    quartet = read_score(corpus_file("haydn/opus74no1/movement3.mxl"), voices=[0, 33])  # two violins, viola, cello
    assert [t.program for t in quartet.tracks] == [40, 48, 41, 42]


def test_musicxml_written_by_aurl_reads_back_as_the_midi_file_it_was_written_from(tmp_path):
    song = make_midi(tmp_path / "song.mid", seed=3, bars=8, drums=False)  # 4/4 then 3/4, a tempo change
    back = read_score(musicxml(tmp_path / "song.mid", tmp_path / "song.musicxml"))

    def notes(score: symusic.Score) -> list[list[tuple[float, float, int]]]:
        tpq = score.ticks_per_quarter
        return [sorted((n.time / tpq, n.duration / tpq, n.pitch) for n in t.notes) for t in score.tracks]

    assert notes(back) == notes(song)
    assert back.tracks[0].program == song.tracks[0].program  # the melody's piano
    sigs = {(s.time / back.ticks_per_quarter, s.numerator, s.denominator) for s in back.time_signatures}
    assert sigs == {(s.time / song.ticks_per_quarter, s.numerator, s.denominator) for s in song.time_signatures}


def test_a_folder_mixing_formats_is_prepared_a_piece_per_tune(tiny_config, tmp_path):
    src = tmp_path / "mine"
    src.mkdir()
    for name in ("bach/bwv66.6.mxl", "nottingham-dataset/reelsa-c.abc"):  # two tunes with chord symbols
        (src / Path(name).name).write_bytes(corpus_file(name).read_bytes())
    make_midi(src / "song.mid", seed=1, bars=4)
    (src / "broken.musicxml").write_text('<?xml version="1.0"?>\n<score-partwise><part-list>\n')
    (src / "empty.xml").write_text(EMPTY_SCORE)
    out = tmp_path / "out"
    report = prepare(str(src), out, tiny_config, **QUIET)
    names = [entry["name"] for entry in json.loads((out / "manifest.json").read_text())["files"]]
    assert names == ["bwv66.6.mxl", "reelsa-c.abc/0080", "reelsa-c.abc/0081", "song.mid"]
    rejected = {r["name"]: r["reason"] for r in map(json.loads, (out / "rejected.jsonl").read_text().splitlines())}
    assert rejected.keys() == {"broken.musicxml", "empty.xml"}
    assert rejected["broken.musicxml"].startswith("not a score music21 can read: ParseError: ")
    assert rejected["empty.xml"] == "no notes"
    assert report.dropped == {"chord symbols": 46}  # what MIDI cannot carry, counted once in the summary
    assert "dropped from the scores (aurl's tokens hold none): 46 chord symbols" in report.table()
    again = prepare(str(src), out, tiny_config, **QUIET)  # a re-run: every tune and file known by its hash
    assert (again.reused, again.tokenized, again.dropped) == (6, 0, report.dropped)


def test_a_song_that_is_not_one_readable_score_is_one_line_naming_it(tmp_path):
    from music21 import converter

    tunes = tmp_path / "tunes.abc"
    tunes.write_bytes(corpus_file("nottingham-dataset/reelsa-c.abc").read_bytes())
    with pytest.raises(DataError, match=r"tunes\.abc: holds 2 tunes; save the one you mean in a file of its own$"):
        read_score(tunes)
    for number in (80, 81):  # by its X: number, as `aurl evaluate` reads a folder's tunes: that tune alone
        expected = score_beats(converter.parse(tunes, number=number).expandRepeats())
        assert [[pitch for _, pitch, _ in part] for part in expected] == [
            [note.pitch for note in sorted(track.notes, key=lambda n: (n.time, n.pitch))]
            for track in read_score(tunes, number).tracks
        ]
    with pytest.raises(DataError, match=r"missing\.mxl: no such score file$"):
        read_score(tmp_path / "missing.mxl")
