"""The built-in corpora: a few real pieces of each through the converter every corpus uses, the union's
names, `aurl corpora` and the error for an unknown name. No test converts a whole large corpus."""

import dataclasses
import json

import pytest
import symusic

from aurl.cli import main
from aurl.data.builtin import CONVERTER, CORPORA, corpora
from aurl.data.corpus import resolve_source
from aurl.data.prepare import prepare
from aurl.data.programs import by_instrument_name, by_voice
from aurl.errors import DataError
from benchmarks.bars import midi_beats, paired, score_beats

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
    assert spec.convert(tmp_path, workers=1, pieces=pieces, **QUIET).failed == {}
    assert {name: _programs(tmp_path / name) for name in KNOWN[name]} == KNOWN[name]


def _convert(name: str, piece: str, out) -> symusic.Score:
    """One piece of a corpus converted into out."""
    spec = CORPORA[name]
    spec.convert(out, pieces=[p for p in spec.pieces() if p.name == piece], **QUIET)
    return symusic.Score(str(out / piece))


def _as_music21_writes(source: str, path) -> symusic.Score:
    """music21's own MIDI file of a chorale, its empty tracks dropped and voices on their programs by name."""
    from music21 import corpus

    corpus.parse(source).write("midi", fp=str(path))
    direct = symusic.Score(str(path))
    direct.tracks = [track for track in direct.tracks if track.notes]
    for track in direct.tracks:
        track.program = {"soprano": 40, "alto": 41, "tenor": 42, "bass": 43}[track.name.lower()]
    return direct


def test_a_chorale_without_a_pickup_converts_byte_for_byte_as_music21_writes_it(tmp_path):
    _as_music21_writes("bach/bwv26.6", tmp_path / "direct.mid").dump_midi(str(tmp_path / "direct.mid"))
    _convert("bach-chorales", "bach_bwv26.6.mid", tmp_path)
    assert (tmp_path / "bach_bwv26.6.mid").read_bytes() == (tmp_path / "direct.mid").read_bytes()


def test_a_pickup_is_written_as_the_end_of_a_full_first_bar(tmp_path):
    """BWV 307 opens with a one-beat pickup, which music21 writes at time 0: the converted file has every
    note three beats later, the first bar's time signature and tempo still at time 0."""
    direct = _as_music21_writes("bach/bwv307", tmp_path / "direct.mid")
    converted = _convert("bach-chorales", "bach_bwv307.mid", tmp_path)
    later = 3 * direct.ticks_per_quarter
    assert converted.ticks_per_quarter == direct.ticks_per_quarter
    assert [[(n.time, n.duration, n.pitch) for n in track.notes] for track in converted.tracks] == [
        [(n.time + later, n.duration, n.pitch) for n in track.notes] for track in direct.tracks
    ]
    assert [(t.name, t.program) for t in converted.tracks] == [(t.name, t.program) for t in direct.tracks]
    assert [(sig.time, sig.numerator, sig.denominator) for sig in converted.time_signatures] == [(0, 4, 4)]
    assert [(tempo.time, tempo.qpm) for tempo in converted.tempos] == [(0, direct.tempos[0].qpm)]


# Pieces whose every note must be on its beat in the score: pickups of a beat (BWV 307, with a bar split by
# its repeat), of two beats in 3/4 with bars split by fermatas (BWV 269), of a dotted quarter in 3/4 and of an
# eighth in 6/8 (essen ballad30 #5 and ballad80 #11, ABC); without a pickup (BWV 26.6), and with a bar split by
# a fermata (BWV 11.6).
ON_BEAT = [
    ("bach-chorales", "bach/bwv307", None, "bach_bwv307.mid"),
    ("bach-chorales", "bach/bwv269", None, "bach_bwv269.mid"),
    ("bach-chorales", "bach/bwv26.6", None, "bach_bwv26.6.mid"),
    ("bach-chorales", "bach/bwv11.6", None, "bach_bwv11.6.mid"),
    ("essen", "essenFolksong/ballad30.abc", 5, "ballad30/0005.mid"),
    ("essen", "essenFolksong/ballad80.abc", 11, "ballad80/0011.mid"),
]


@pytest.mark.parametrize(("name", "source", "number", "piece"), ON_BEAT)
def test_each_note_is_on_its_beat_in_the_score(name, source, number, piece, tmp_path):
    """Each note's beat in its bar of the MIDI file (from the file's own time signatures) is music21's for it
    in the score with its repeats played out, as music21's MIDI writer plays them."""
    from music21 import corpus

    score = corpus.parse(source, number=number).expandRepeats()
    _convert(name, piece, tmp_path)
    written = midi_beats(tmp_path / piece)
    pairs, unmatched = paired(score_beats(score), written)
    assert pairs and unmatched == 0
    assert [got[2] for _, got in pairs] == pytest.approx([want[2] for want, _ in pairs])
    if piece == "bach_bwv307.mid":  # the soprano's first notes, as the score shows them
        assert [beat for _, _, beat in written[0][:6]] == [4, 1, 1.5, 2, 3, 4]


def test_a_bar_split_between_two_sections_stays_one_bar(tmp_path):
    """O'Neill's #11 (ABC, 3/4) opens with a one-beat pickup, and so does its second section, after a
    two-beat measure: the two measures make one bar, so that the second pickup is on beat 3, where music21's
    ABC reader (unlike its MusicXML reader) puts it on beat 1 of a bar of its own."""
    from music21 import corpus

    piece = "0001-0050/0011.mid"
    plain = score_beats(corpus.parse("oneills1850/0001-0050.abc", number=11).expandRepeats())
    second = [(onset, pitch, beat + 2 if 48 <= onset < 49 else beat) for onset, pitch, beat in plain[0]]
    assert second != plain[0]  # its pickup: 48 to 49
    _convert("oneill", piece, tmp_path)
    pairs, unmatched = paired([second], midi_beats(tmp_path / piece))
    assert len(pairs) > 80 and unmatched == 1  # a grace note music21 does not write
    assert [got[2] for _, got in pairs] == pytest.approx([want[2] for want, _ in pairs])


def test_a_corpus_an_older_converter_wrote_is_converted_again_on_first_use(tmp_path, monkeypatch):
    """Every corpus converted before the converter had a version: its complete.json has none."""
    monkeypatch.setenv("AURL_CACHE", str(tmp_path))
    one = [piece for piece in CORPORA["bach-chorales"].pieces() if piece.name == "bach_bwv307.mid"]
    spec = dataclasses.replace(CORPORA["bach-chorales"], pieces=lambda: one)
    root = tmp_path / "bach-chorales"
    root.mkdir()
    (root / "bach_bwv307.mid").write_bytes(b"the old file")
    (root / "complete.json").write_text(json.dumps({"converted": 1, "failed": {}}))
    assert spec.info().cache is None  # `aurl corpora`: not converted (yet)
    lines = []
    assert spec.folder(log=lines.append) == root
    assert [line for line in lines if "older" in line] == [
        "builtin:bach-chorales was converted by an older converter (version 1); converting again ..."
    ]
    assert json.loads((root / "complete.json").read_text()) == {
        "converter": CONVERTER, "converted": 1, "failed": {}, "unaligned": []
    }  # fmt: skip
    again = symusic.Score(str(root / "bach_bwv307.mid"))
    assert again.tracks[0].notes[0].time == 3 * again.ticks_per_quarter  # the pickup, after three beats of rest
    assert not [path for path in tmp_path.iterdir() if path != root]  # nothing half-built left beside it
    lines.clear()
    assert spec.folder(log=lines.append) == root and lines == []  # converted once
    assert spec.info().cache == root


# Cuckoo's Nest opens with a pickup, written as a bar's end; Little Czech Number plays its pickup again after
# a full bar, which no shift makes a bar's end: music21's bar lines are kept (it is unaligned).
@pytest.mark.parametrize(("piece", "first"), [("reelsa-c/0080.mid", {2, 6, 9}), ("reelsa-c/0081.mid", {9, 0, 4})])
def test_chord_symbols_become_a_chord_track_in_time_with_the_melody(piece, first, tmp_path):
    melody, chords = _convert("nottingham", piece, tmp_path).tracks
    assert chords.name == "Chords" and melody.name != "Chords"
    # music21 writes the tune's repeats out; the chords follow them, each starting with a melody note
    # (or a rest) and the last ending with the tune.
    onsets = sorted({note.time for note in chords.notes})
    on_melody = {note.time for note in melody.notes}
    assert sum(onset in on_melody for onset in onsets) > 0.9 * len(onsets) > 50
    assert max(note.end for note in chords.notes) == max(note.end for note in melody.notes)
    assert {note.pitch % 12 for note in chords.notes if note.time == onsets[0]} == first  # "D", "Am"


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
    assert done == {"converter": CONVERTER, "converted": 2, "failed": {}, "unaligned": ["reelsa-c/0081.mid"]}
    assert all(row.cache is not None for row in corpora() if row.name != "builtin:bach-chorales")
    report = prepare("builtin:music21", tmp_path / "prepared", tiny_config, progress=False, **QUIET)
    assert report.rejected == []


def test_programs_by_voice_order_and_by_instrument_name():
    tracks = []
    for pitch in (50, 70, 40, 60, 55):
        track = symusic.Track(name="Tenor", program=0)
        track.notes.append(symusic.Note(0, 480, pitch, 90))
        tracks.append(track)
    by_voice(tracks)
    assert [t.program for t in tracks] == [48, 40, 43, 41, 42]
    names = ["Violin I", "Violin II", "Viola", "Cello", "Piano", "Piano", "MusicXML Part"]
    tracks = [symusic.Track(name=name, program=48) for name in names]  # music21 read "string instrument"
    by_instrument_name(tracks)
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


def test_a_piece_that_takes_too_long_is_skipped_and_named(monkeypatch, tmp_path):
    """A piece music21 takes minutes to read is given up after PIECE_SECONDS, its error saying so, and no file
    of it is left; the next piece converts as before."""
    import time

    from aurl.data import builtin

    def slow(*_):
        time.sleep(30)

    spec = CORPORA["oneill"]
    piece = next(p for p in spec.pieces() if p.name == "0001-0050/0002.mid")
    monkeypatch.setattr(builtin, "PIECE_SECONDS", 0.2)
    monkeypatch.setattr(builtin, "parse_score", slow)
    start = time.perf_counter()
    name, err, _ = builtin._convert((piece, str(tmp_path / "slow.mid"), spec.programs, False))
    assert time.perf_counter() - start < 5
    assert name == piece.name and err.startswith("TimeoutError: took over 0.2 s to convert")
    assert not (tmp_path / "slow.mid").exists()
    monkeypatch.undo()
    assert builtin._convert((piece, str(tmp_path / "next.mid"), spec.programs, False))[1] is None
