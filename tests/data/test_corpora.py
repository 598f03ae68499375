"""The built-in corpora: a few real pieces of each through the converter every corpus uses, the union's
names, `aurl corpora` and the error for an unknown name. No test converts a whole large corpus."""

import dataclasses
import json

import pytest
import symusic

from aurl.cli import main
from aurl.data.builtin import CORPORA, _instrument_programs, _voice_programs, corpora
from aurl.data.corpus import resolve_source
from aurl.data.prepare import prepare
from aurl.errors import DataError

QUIET = {"log": lambda s: None}

# Per corpus: a few pieces known to music21's listing, with the programs of their tracks once converted.
# Each exercises something: pitch-ordered voices, a second tenor or violin on a spare program, a piano's two
# staves on one program, ABC's shared time signatures (essen altdeu10 #5), chord symbols (nottingham),
# repeats music21 cannot play out (bwv277, a Humdrum chorale that names no voice; haydn opus74no1/3).
KNOWN = {
    "bach-chorales": {"bach_bwv307.mid": [40, 41, 42, 43], "bach_bwv277.mid": [40, 41, 42, 43]},
    "palestrina": {"Agnus_00.mid": [40, 41, 48, 42, 43]},
    "monteverdi": {"madrigal.5.1.mid": [40, 41, 48, 42, 43, 49]},
    "early": {"luca/gloria.mid": [40, 41, 43], "trecento/PMFC_06_Giovanni-01-Angnel_son_biancho.mid": [40, 43]},
    "classical": {
        "haydn/opus1no1/movement2.mid": [40, 48, 41, 42],
        "haydn/opus74no1/movement3.mid": [40, 48, 41, 42],
        "schubert/Lindenbaum.mid": [53, 0, 0],
    },
    "essen": {"altdeu10/0005.mid": [40], "han1/0002.mid": [40]},
    "oneill": {"0001-0050/0002.mid": [40], "0051-0100/0051.mid": [40]},
    "ryans": {"AcaciaReel.mid": [40]},
    "nottingham": {"reelsa-c/0080.mid": [40, 0], "reelsa-c/0081.mid": [40, 0]},
}


def _programs(path) -> list[int]:
    score = symusic.Score(str(path))
    assert all(track.notes for track in score.tracks)
    return [track.program for track in score.tracks]


@pytest.mark.parametrize("name", list(KNOWN))
def test_known_pieces_convert_with_a_track_per_part(name, tmp_path):
    spec = CORPORA[name]
    pieces = [piece for piece in spec.pieces() if piece.name in KNOWN[name]]
    assert len(pieces) == len(KNOWN[name])
    assert spec.convert(tmp_path, workers=1, pieces=pieces, **QUIET) == {}
    assert {name: _programs(tmp_path / name) for name in KNOWN[name]} == KNOWN[name]


def test_a_chorale_converts_byte_for_byte_as_before(tmp_path):
    """The chorales' files stay what aurl always wrote: music21's MIDI, voices by name, empty tracks dropped."""
    from music21 import corpus

    corpus.parse("bach/bwv307").write("midi", fp=str(tmp_path / "direct.mid"))
    direct = symusic.Score(str(tmp_path / "direct.mid"))
    direct.tracks = [track for track in direct.tracks if track.notes]
    for track in direct.tracks:
        track.program = {"soprano": 40, "alto": 41, "tenor": 42, "bass": 43}[track.name.lower()]
    direct.dump_midi(str(tmp_path / "direct.mid"))
    spec = CORPORA["bach-chorales"]
    spec.convert(tmp_path, pieces=[p for p in spec.pieces() if p.name == "bach_bwv307.mid"], **QUIET)
    assert (tmp_path / "bach_bwv307.mid").read_bytes() == (tmp_path / "direct.mid").read_bytes()


def test_chord_symbols_become_a_chord_track_in_time_with_the_melody(tmp_path):
    spec = CORPORA["nottingham"]
    spec.convert(tmp_path, pieces=[p for p in spec.pieces() if p.name == "reelsa-c/0081.mid"], **QUIET)
    melody, chords = symusic.Score(str(tmp_path / "reelsa-c/0081.mid")).tracks
    assert chords.name == "Chords" and melody.name != "Chords"
    # music21 writes the tune's repeats out; the chords follow them, each starting with a melody note
    # (or a rest) and the last ending with the tune.
    onsets = sorted({note.time for note in chords.notes})
    on_melody = {note.time for note in melody.notes}
    assert sum(onset in on_melody for onset in onsets) > 0.9 * len(onsets) > 100
    assert max(note.end for note in chords.notes) == max(note.end for note in melody.notes)
    assert {note.pitch % 12 for note in chords.notes if note.time == onsets[0]} == {9, 0, 4}  # "Am"


def test_listing_skips_copies_analyses_and_test_files():
    palestrina = CORPORA["palestrina"].pieces()
    assert len({piece.name for piece in palestrina}) == len(palestrina) < 1318  # 21 files are byte copies
    monteverdi = [piece.name for piece in CORPORA["monteverdi"].pieces()]
    assert len(monteverdi) == 48 and all(name.startswith("madrigal.") for name in monteverdi)
    classical = {piece.name: piece.source for piece in CORPORA["classical"].pieces()}
    assert classical["beethoven/opus18no1/movement1.mid"].endswith(".mxl")  # not also its Humdrum copy
    assert not any(name.startswith("bach") for name in classical)
    essen = CORPORA["essen"].pieces()
    assert len(essen) > 8000 and not any(piece.name.startswith("test") for piece in essen)


def test_music21_is_every_corpus_but_the_chorales_named_by_corpus(tmp_path, monkeypatch, tiny_config):
    monkeypatch.setenv("AURL_CACHE", str(tmp_path / "cache"))
    union = CORPORA["music21"]
    assert "bach-chorales" not in union.members and set(union.members) == set(CORPORA) - {"bach-chorales", "music21"}
    for member in union.members:  # one piece each; nottingham whole (two tunes), through its real cache
        if member != "nottingham":
            spec = CORPORA[member]
            one = [piece for piece in spec.pieces() if piece.name == next(iter(KNOWN[member]))]
            monkeypatch.setitem(CORPORA, member, dataclasses.replace(spec, pieces=lambda one=one: one))
    files = resolve_source("builtin:music21", workers=2, **QUIET)
    expected = [f"{m}/{next(iter(KNOWN[m]))}" for m in union.members if m != "nottingham"]
    assert [f.name for f in files] == sorted(
        [*expected, "nottingham/reelsa-c/0080.mid", "nottingham/reelsa-c/0081.mid"]
    )
    # The union reads its members' folders: nothing converted twice, and each member lists the same files.
    assert not (tmp_path / "cache" / "music21").exists()
    alone = resolve_source("builtin:nottingham", **QUIET)
    assert [f.path for f in alone] == [f.path for f in files if f.name.startswith("nottingham/")]
    done = json.loads((tmp_path / "cache" / "nottingham" / "complete.json").read_text())
    assert done == {"converted": 2, "failed": {}}
    assert all(row.cache is not None for row in corpora() if row.name != "builtin:bach-chorales")
    report = prepare("builtin:music21", tmp_path / "prepared", tiny_config, progress=False, **QUIET)
    assert report.rejected == []


def test_programs_by_voice_order_and_by_instrument_name():
    tracks = []
    for pitch in (50, 70, 40, 60, 55):
        track = symusic.Track(name="Tenor", program=0)
        track.notes.append(symusic.Note(0, 480, pitch, 90))
        tracks.append(track)
    _voice_programs(tracks)
    assert [t.program for t in tracks] == [48, 40, 43, 41, 42]
    names = ["Violin I", "Violin II", "Viola", "Cello", "Piano", "Piano", "MusicXML Part"]
    tracks = [symusic.Track(name=name, program=48) for name in names]  # music21 read "string instrument"
    _instrument_programs(tracks)
    assert [t.program for t in tracks] == [40, 49, 41, 42, 0, 0, 48]


def test_aurl_corpora_lists_every_corpus(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AURL_CACHE", str(tmp_path))
    assert main(["corpora"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in CORPORA:
        row = next(line for line in lines if line.startswith(f"builtin:{name} "))
        assert " no " in row  # an empty cache: nothing converted yet
    chorales = next(line for line in lines if line.startswith("builtin:bach-chorales "))
    assert chorales.split()[1] == "350" and "4 voices" in chorales


def test_an_unknown_builtin_corpus_names_the_available_ones():
    with pytest.raises(DataError) as err:
        resolve_source("builtin:beethoven")
    message = str(err.value)
    assert "\n" not in message and message.startswith("builtin:beethoven: unknown built-in corpus")
    assert all(name in message for name in CORPORA)
