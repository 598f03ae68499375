"""Multitrack grammar and co-creation: accompany, infill and attribute controls."""

import numpy as np
import pytest
import symusic
import torch
from miditok.utils import get_bars_ticks

from aurl.cli import main
from aurl.config import GenerateConfig, ModelConfig, load_config
from aurl.data.multitrack import Multitrack
from aurl.data.tokenize import build_tokenizer
from aurl.generation.cocreate import read_song
from aurl.generation.controls import parse_controls
from aurl.generation.generate import Trained, tokens_to_score
from aurl.generation.multitrack_grammar import MultitrackGrammar, Segment
from aurl.generation.requests import Accompany, Infill, generate
from aurl.generation.sampler import sample
from aurl.generation.session import Session
from aurl.models.transformer import Transformer
from tests.conftest import MMM, TINY


def _untrained(tokenizer, seed=0):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, context=1024), len(tokenizer)).eval()


def _notes(track) -> list[tuple[int, int, int, int]]:
    return [(n.time, n.duration, n.pitch, n.velocity) for n in track.notes]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(load_config(TINY, MMM).tokenizer)


def test_an_untrained_model_writes_multitrack_pieces_with_zero_skipped_tokens(tokenizer):
    mt = Multitrack(tokenizer)
    model, gen = _untrained(tokenizer), torch.Generator().manual_seed(0)
    prompt = torch.full((6, 1), mt.bos)
    args = (tokenizer["EOS_None"], mt.pad)
    rows = sample(model, prompt, GenerateConfig(max_tokens=600), MultitrackGrammar(tokenizer), *args, generator=gen)
    samples = [tokens_to_score(tokenizer, row[1:]) for row in rows.tolist()]
    assert [skipped for _, skipped in samples] == [0] * 6
    assert sum(len(t.notes) for score, _ in samples for t in score.tracks) > 0
    for row in rows.tolist():  # drum tracks play drum notes only, the others pitched notes only
        for track in mt.tracks(np.asarray(row)):
            kinds = {tokenizer[int(t)].split("_")[0] for bar in track.bars for t in bar}
            assert not {"Pitch", "PitchDrum"} <= kinds
    unconstrained = sample(model, prompt, GenerateConfig(max_tokens=200), None, *args, generator=gen)
    assert sum(mt.errors(row[1:]) for row in unconstrained.tolist()) > 0  # the check can fail


def test_a_plan_writes_exactly_its_bars_with_the_requested_controls(tokenizer):
    """New tracks and infilled bars of an untrained model: exact bar counts, forced controls in place,
    zero skipped tokens."""
    mt = Multitrack(tokenizer)
    grammar = MultitrackGrammar(tokenizer)
    requests = parse_controls(["track=1 density=2-5 polyphony=1", "bars=2-3 density=4 pitch_class=C,E,G"], tokenizer)
    sig = tokenizer.vocab["TimeSig_4/4"]
    track_controls = [*requests[0].tokens["track_density"], *requests[0].tokens["track_polyphony"]]
    bar_controls = [*requests[1].tokens["bar_density"], *requests[1].tokens["bar_pitch_class"]]
    plan = [
        Segment([mt.track_start, mt.program[33], *track_controls], 4, mt.track_end, {1: [*bar_controls, sig]}),
        Segment([mt.track_start, mt.program[-1]], 4, mt.track_end),
        Segment([mt.infill_start, mt.bar], 1, mt.infill_end, {0: [*bar_controls, sig]}),
    ]
    model, gen = _untrained(tokenizer), torch.Generator().manual_seed(1)
    prompt = torch.full((4, 1), mt.bos)
    settings = GenerateConfig(max_tokens=900)
    rows = sample(model, prompt, settings, grammar, mt.eos, mt.pad, generator=gen, plan=plan).tolist()
    for row in rows:
        row = row[1 : row.index(mt.eos)] if mt.eos in row else row[1:]
        tracks = mt.tracks(np.asarray(row))
        assert [len(t.bars) for t in tracks] == [4, 4]
        assert tracks[0].header.tolist() == [mt.track_start, mt.program[33], *track_controls]
        assert tracks[0].bars[1][1 : 1 + len(bar_controls) + 1].tolist() == [*bar_controls, sig]
        assert not any(mt.is_control[t] for bar in (0, 2, 3) for t in tracks[0].bars[bar])
        fill = row[row.index(mt.infill_start) :]
        assert fill[:2] == [mt.infill_start, mt.bar] and fill[2 : 3 + len(bar_controls)] == [*bar_controls, sig]
        assert fill[-1] == mt.infill_end and fill.count(mt.bar) == 1
        assert mt.errors(row[: row.index(mt.infill_start)]) == 0


def test_accompaniment_keeps_the_kept_tracks_note_for_note(mmm_run, midi_dir, tmp_path):
    song = midi_dir / "piece_2.mid"
    original = symusic.Score(str(song))
    request = Accompany(song=str(song), add=[48, -1], keep=[1])
    samples = generate(mmm_run, tmp_path, "latest", None, request, num=2, max_tokens=400)
    end = get_bars_ticks(original)[-1] + 3 * original.ticks_per_quarter  # the last bar is 3/4
    for s in samples:
        out = symusic.Score(str(s.midi))
        assert _notes(out.tracks[0]) == _notes(original.tracks[1])  # the kept bass, untouched
        assert [(t.program, t.is_drum) for t in out.tracks[1:]] == [(48, False), (0, True)]
        assert all(len(t.notes) for t in out.tracks[1:]) and s.skipped_tokens == 0
        assert max(n.time for t in out.tracks for n in t.notes) < end  # no note starts after the song
        assert out.tempos[0].qpm == original.tempos[0].qpm


def test_new_tracks_have_exactly_the_songs_bars(mmm_run, midi_dir):
    trained = Trained.load(mmm_run, "latest")
    session = Session(trained, trained.settings({"num": 3}))
    mt = session.mt
    song = read_song(midi_dir / "piece_4.mid", session.tokenizer, mt)
    plan = [Segment([mt.track_start, mt.program[0]], song.bars, mt.track_end)]
    for row in session.write([[mt.bos, *song.tracks[2].ids(mt.track_end)]] * 3, plan, 400):
        assert [len(t.bars) for t in mt.tracks(np.asarray(row))] == [song.bars]


@pytest.mark.parametrize("track", [0, None])
def test_infilling_rewrites_the_bars_and_keeps_everything_else(mmm_run, midi_dir, tmp_path, track):
    song = midi_dir / "piece_5.mid"
    original = symusic.Score(str(song))
    ticks = get_bars_ticks(original)
    start, stop = ticks[2], ticks[4]  # bars 3-4
    samples = generate(mmm_run, tmp_path, "latest", None, Infill(song=str(song), bars=(3, 4), track=track), num=2)
    targets = [0] if track == 0 else range(len(original.tracks))
    for s in samples:
        out = symusic.Score(str(s.midi))
        assert s.skipped_tokens == 0 and len(out.tracks) == len(original.tracks)
        for i, (old, new) in enumerate(zip(original.tracks, out.tracks, strict=True)):
            outside = [n for n in _notes(old) if not start <= n[0] < stop]
            assert [n for n in _notes(new) if not start <= n[0] < stop] == outside  # kept note for note
            if i not in targets:
                assert _notes(new) == _notes(old)
    # the rewritten bars hold new music (an untouched span in every sample would mean nothing was written)
    spans = [[n for n in _notes(symusic.Score(str(s.midi)).tracks[0]) if start <= n[0] < stop] for s in samples]
    assert any(span != [n for n in _notes(original.tracks[0]) if start <= n[0] < stop] for span in spans)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--infill", "{song}", "--bars", "9-40"], "has bars 1-12"),
        (["--infill", "{song}", "--bars", "x"], "--bars x: expected A-B"),
        (["--infill", "{song}", "--bars", "2-3", "--track", "7"], "--track 7: "),
        (["--accompany", "{song}", "--add", "33", "--keep", "5"], "--keep 5: "),
        (["--accompany", "{song}", "--add", "piano"], "--add piano: a General MIDI program"),
        (["--accompany", "{song}", "--add", "33", "--control", "track=1", "loudness=3"], "unknown key 'loudness'"),
        (["--accompany", "{song}", "--add", "33", "--control", "track=1", "density=2"], "not a track being written"),
        (["--accompany", "{song}", "--add", "33", "--control", "bars=1-2", "polyphony=9"], "outside 1-6"),
        (["--accompany", "{song}", "--add", "33", "--control", "bars=2", "repetition=0.5"], "no repetition control"),
        (["--control", "density=3"], "--control goes with --accompany or --infill"),
        (["--accompany", "{song}", "--add", "33", "--meter", "3/4"], "keeps the song's meter"),
    ],
)
def test_bad_cocreation_options_are_one_line_errors(mmm_run, midi_dir, tmp_path, capsys, extra, message):
    song = str(midi_dir / "piece_1.mid")
    args = ["generate", "--run", str(mmm_run), "--checkpoint", "latest", "--out", str(tmp_path)]
    assert main([*args, *(a.format(song=song) for a in extra)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_tracks_written_from_nothing_have_the_first_tracks_bars(tokenizer):
    mt = Multitrack(tokenizer)
    model, gen = _untrained(tokenizer, seed=3), torch.Generator().manual_seed(3)
    args = (mt.eos, mt.pad)
    rows = sample(
        model,
        torch.full((6, 1), mt.bos),
        GenerateConfig(max_tokens=800),
        MultitrackGrammar(tokenizer),
        *args,
        generator=gen,
    )
    counts = [[len(t.bars) for t in mt.tracks(np.asarray(row))] for row in rows.tolist()]
    assert any(len(c) > 1 for c in counts)
    finished = [c[:-1] if len(c) > 1 else c for c in counts]  # the last track may be cut by the budget
    assert all(len(set(c)) == 1 for c in finished), counts


@pytest.mark.parametrize("signatures", [True, False])
def test_a_song_gives_each_bar_its_meter_or_none_without_time_signatures(midi_dir, signatures):
    tokenizer = build_tokenizer(load_config(TINY, [*MMM, f"tokenizer.use_time_signatures={signatures}"]).tokenizer)
    song = read_song(midi_dir / "piece_0.mid", tokenizer, Multitrack(tokenizer))
    if signatures:  # six bars of 4/4, then six of 3/4
        assert [tokenizer[m] for (m,) in song.meters] == ["TimeSig_4/4"] * 6 + ["TimeSig_3/4"] * 6
    else:  # the same 42 quarter notes in bars of 4/4, the tokenizer's meter without time signatures
        assert song.meters == [[]] * 11


def test_the_generate_command_accompanies_and_infills_with_controls(mmm_run, midi_dir, tmp_path):
    song = str(midi_dir / "piece_3.mid")
    args = ["generate", "--run", str(mmm_run), "--checkpoint", "latest", "--num", "1", "--max-tokens", "400"]
    steer = ["--control", "track=1", "density=2-6", "--control", "bars=2-3", "polyphony=1", "duration=quarter"]
    assert main([*args, "--out", str(tmp_path / "a"), "--accompany", song, "--keep", "0", "--add", "33", *steer]) == 0
    assert main([*args, "--out", str(tmp_path / "i"), "--infill", song, "--bars", "2-3", "--track", "1", "--wav"]) == 0
    accompanied, infilled = symusic.Score(str(tmp_path / "a" / "sample_0.mid")), tmp_path / "i" / "sample_0"
    original = symusic.Score(song)
    assert _notes(accompanied.tracks[0]) == _notes(original.tracks[0])
    assert accompanied.tracks[1].program == 33 and len(accompanied.tracks[1].notes)
    assert infilled.with_suffix(".mid").is_file() and infilled.with_suffix(".wav").stat().st_size > 0
