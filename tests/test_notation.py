"""MusicXML out: a MIDI file as a score that notation programs (and music21) read back note for note."""

import symusic

from aurl.cli import main
from tests.conftest import make_midi


def _chorale(path) -> symusic.Score:
    """Four voices in G major on a quarter/eighth grid, 3/4, a tempo of 80."""
    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    score.tempos.append(symusic.Tempo(0, 80))
    lines = {
        40: [67, 71, 74, 72, 71, 69, 67, 66, 67],
        41: [62, 62, 67, 66, 62, 62, 59, 62, 62],
        42: [59, 55, 59, 57, 55, 54, 55, 57, 59],
        43: [43, 47, 43, 45, 50, 50, 52, 50, 43],
    }
    for program, pitches in lines.items():
        track = symusic.Track(program=program)
        for i, pitch in enumerate(pitches):
            track.notes.append(symusic.Note(480 * i, 480 if i % 3 else 240, pitch, 80))
        score.tracks.append(track)
    score.dump_midi(str(path))
    return score


def _parts(path) -> list[tuple[str, list[tuple[float, int]]]]:
    from music21 import converter

    score = converter.parse(str(path)).stripTies()
    return [
        (
            part.partName,
            sorted((float(n.getOffsetInHierarchy(part)), p.midi) for n in part.recurse().notes for p in n.pitches),
        )
        for part in score.parts
    ]


def test_a_chorale_becomes_four_named_parts_with_its_notes_key_meter_and_tempo(tmp_path, capsys):
    from music21 import converter, key, meter, tempo

    midi = tmp_path / "chorale.mid"
    written = _chorale(midi)
    assert main(["render", str(midi), "--musicxml", "--score"]) == 0
    xml = tmp_path / "chorale.musicxml"
    assert str(xml) in capsys.readouterr().out and not (tmp_path / "chorale.png").exists()  # only what was asked
    svg = (tmp_path / "chorale.svg").read_text()  # engraved: four staves a system, every note head
    assert svg.count('class="staff"') % 4 == 0 < svg.count('class="staff"') and svg.count('class="note"') == 36
    parts = _parts(xml)
    assert [name for name, _ in parts] == ["Violin", "Viola", "Violoncello", "Contrabass"]
    for (_, notes), track in zip(parts, written.tracks, strict=True):
        assert notes == sorted((n.time / 480, n.pitch) for n in track.notes)
    score = converter.parse(str(xml))
    assert [str(k) for k in score.parts[0].recurse().getElementsByClass(key.KeySignature)] == [
        str(key.KeySignature(1))
    ]  # G major: one sharp
    assert [
        [sig.ratioString for sig in part.recurse().getElementsByClass(meter.TimeSignature)] for part in score.parts
    ] == [["3/4"]] * 4
    assert round(score.recurse().getElementsByClass(tempo.MetronomeMark).first().number) == 80


def test_off_grid_notes_are_quantised_and_a_broken_file_is_one_line(tmp_path, capsys):
    midi = tmp_path / "band.mid"
    make_midi(midi, seed=2, bars=4, drums=False)
    score = symusic.Score(str(midi))
    for note in score.tracks[0].notes:
        note.time += 7  # a little late, as played
    score.dump_midi(str(midi))
    assert main(["render", str(midi), "--musicxml", "--png"]) == 0
    assert (tmp_path / "band.png").exists()
    melody = _parts(tmp_path / "band.musicxml")[0][1]
    tpq = score.ticks_per_quarter
    assert melody == sorted(((n.time - 7) / tpq, n.pitch) for n in score.tracks[0].notes)
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd not really")
    capsys.readouterr()
    assert main(["render", str(broken), "--musicxml"]) == 2
    err = capsys.readouterr().err
    assert "broken.mid" in err and not (tmp_path / "broken.musicxml").exists()


def test_the_notes_the_model_wrote_are_coloured_and_the_given_ones_not(tmp_path):
    """A take's given material (here the soprano, and the other voices' first bar) stays black in the score and
    grey in the piano roll's notes; what the model wrote is coloured."""
    from music21 import converter

    from aurl.notation import WRITTEN_COLOUR, musicxml
    from aurl.render import drawing

    score = _chorale(tmp_path / "take.mid")
    bar = 3 * 480
    given = [(0, 0, score.end() + 1), *((track, 0, bar) for track in (1, 2, 3))]
    parsed = converter.parse(str(musicxml(tmp_path / "take.mid", tmp_path / "take.musicxml", given)))
    for track, part in enumerate(parsed.parts):
        for note in part.flatten().notes:
            written = track > 0 and note.offset >= 3
            assert (note.style.color == WRITTEN_COLOUR) == written, (track, note.offset, note.style.color)
    notes = drawing(score, given)["tracks"]
    assert all(n[4] == 1 for n in notes[0]["notes"])
    assert [n[4] for n in notes[1]["notes"]] == [1, 1, 1, 0, 0, 0, 0, 0, 0]
    plain = musicxml(tmp_path / "take.mid", tmp_path / "plain.musicxml")  # no given material: nothing coloured
    assert WRITTEN_COLOUR not in plain.read_text()
