"""Scores in notation from the command line: an ABC tune of music21's corpus harmonised end to end, rendered,
and a broken or empty score refused in one line naming it (exit code 2)."""

import pytest
import symusic

from aurl.cli import main
from aurl.data.corpus import read_score
from tests.conftest import EMPTY_SCORE, abc_tune


def test_harmonise_an_abc_tune_from_the_command_line(trained_run, tmp_path, capsys):
    """The tune names no instrument: it plays the run's first melodic program (0, the tiny run's melody), kept
    note for note, and the run writes its bass (33) beside it."""
    tune = abc_tune(tmp_path)
    out = tmp_path / "takes"
    argv = ["generate", "--run", str(trained_run), "--accompany", str(tune), "--keep", "0", "--add", "33"]
    assert main([*argv, "--num", "1", "--out", str(out)]) == 0, capsys.readouterr().err
    take = symusic.Score(str(out / "sample_0.mid"))
    melody = read_score(tune).tracks[0]
    assert [t.program for t in take.tracks] == [0, 33] and take.tracks[1].notes
    assert [(n.time, n.duration, n.pitch) for n in take.tracks[0].notes] == [
        (n.time, n.duration, n.pitch) for n in melody.notes
    ]


def test_render_a_score(tmp_path, capsys):
    tune = abc_tune(tmp_path)
    assert main(["render", str(tune), "--png", "--musicxml"]) == 0, capsys.readouterr().err
    assert (tmp_path / "ritter.png").stat().st_size > 0
    again = read_score(tmp_path / "ritter.musicxml")  # aurl's MusicXML of it reads back as the tune
    assert [n.pitch for n in again.tracks[0].notes] == [n.pitch for n in read_score(tune).tracks[0].notes]
    assert main(["render", str(tmp_path / "ritter.musicxml"), "--musicxml"]) == 2  # never over its own input
    assert "ritter.musicxml: --musicxml would write over it; pass --out DIR" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "text", "sentence"),
    [
        ("broken.musicxml", "<score-partwise><part-list>", "not a score music21 can read: ParseError: "),
        ("empty.musicxml", EMPTY_SCORE, "no notes"),
    ],
)
def test_a_broken_or_empty_score_is_one_line_naming_it(name, text, sentence, trained_run, tmp_path, capsys):
    (tmp_path / name).write_text(text)
    argv = ["generate", "--run", str(trained_run), "--accompany", str(tmp_path / name), "--add", "33"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"aurl generate: error: {tmp_path / name}: {sentence}")
