"""Co-creation in the time-ordered stream (REMI with programs), on the tiny REMI run: given notes forced at
their onsets, new tracks with exactly the song's bars, every token decoding."""

import pytest
import symusic
import torch
from miditok.utils import get_bars_ticks

from aurl.cli import main
from aurl.config import GenerateConfig, ModelConfig, load_config
from aurl.data.controls import CONTROLS
from aurl.data.layout import Layout, task_ids
from aurl.data.prepare import tokenize_score
from aurl.data.tokenize import build_tokenizer
from aurl.generation.controls import parse_controls, steering
from aurl.generation.generate import tokens_to_score
from aurl.generation.given import GivenGrammar, plan_of
from aurl.generation.requests import Accompany, Infill, generate
from aurl.generation.sampler import sample
from aurl.generation.timed import read_timed_song
from aurl.models.transformer import Transformer
from tests.conftest import TINY, random_session


def _notes(track) -> list[tuple[int, int, int]]:
    return sorted((n.time, n.duration, n.pitch) for n in track.notes)


def _bars(score: symusic.Score) -> int:
    return len(get_bars_ticks(score))


def test_an_untrained_model_holds_the_given_notes_and_the_songs_bars(trained_run, midi_dir):
    """Random weights: whatever the model wants, the grammar forces the melody at its onsets and the next
    bar's melody in a block after each time signature, writes only the new program, keeps every bar's meter
    and ends at the song's last bar."""
    session = random_session(trained_run, 3)
    tokenizer, layout = session.tokenizer, session.layout
    assert layout.ahead == 1  # the run trained accompany and infill windows
    song = read_timed_song(midi_dir / "piece_6.mid", tokenizer, layout)
    melody = song.bars_of([0], tokenizer, layout)
    given = plan_of(layout, melody, range(len(melody)), lambda bar, program: True, [48])
    prompt = [tokenizer["BOS_None"], *task_ids(tokenizer, "accompany")]
    for row in session.write([prompt] * 4, [given], 300 + given.forced):
        played = layout.played(row)
        score, skipped = tokens_to_score(tokenizer, played)
        assert skipped == 0
        bars = layout.bars(played)
        assert [bar.head for bar in bars] == [bar.head for bar in song.bars]
        for onset in (onset for bar in bars for onset in bar.onsets):  # each program's notes together
            runs = [
                p for i, p in enumerate(n.program for n in onset.notes) if i == 0 or onset.notes[i - 1].program != p
            ]
            assert len(runs) == len(set(runs))
        by_program = {t.program: t for t in score.tracks}
        assert set(by_program) <= {0, 48}
        expected = tokens_to_score(tokenizer, [t for bar in melody for t in layout.plain(bar)])[0].tracks[0]
        assert _notes(by_program[0]) == _notes(expected)  # the melody, note for note, at its onsets
        # each bar opens with its Bar, its time signature and the block of the next bar's melody
        opened = [i for i, t in enumerate(row) if t == layout.bar]
        for b, i in enumerate(opened):
            block = layout.block(melody[b + 1] if b + 1 < len(melody) else None, lambda program: True)
            opening = [*melody[b].head[1:], *block]
            assert block[0] == layout.start and row[i + 1 : i + 1 + len(opening)] == opening


@pytest.mark.parametrize("sweeps", [0, 1])
def test_accompaniment_keeps_the_kept_tracks_note_for_note(trained_run, midi_dir, tmp_path, sweeps):
    """With a sweep each new track is rewritten a span at a time with the kept one and the other new one given."""
    song = midi_dir / "piece_2.mid"
    original = symusic.Score(str(song))
    request = Accompany(song=str(song), add=[48, 41], keep=[1])
    samples = generate(trained_run, tmp_path, "latest", None, request, num=2, max_tokens=200, sweeps=sweeps)
    end = get_bars_ticks(original)[-1] + 3 * original.ticks_per_quarter  # the last bar is 3/4
    for s in samples:
        out = symusic.Score(str(s.midi))
        assert _notes(out.tracks[0]) == _notes(original.tracks[1])  # the kept bass, untouched
        assert [t.program for t in out.tracks[1:]] == [48, 41] and s.skipped_tokens == 0
        assert max(n.time for t in out.tracks for n in t.notes) < end  # no note starts after the song
        assert _bars(out) == _bars(original)
        assert [(ts.time, ts.numerator) for ts in out.time_signatures] == [
            (ts.time, ts.numerator) for ts in original.time_signatures
        ]


@pytest.mark.parametrize(("track", "sweeps"), [(0, 0), (None, 0), (None, 2)])
def test_infilling_rewrites_the_bars_and_keeps_everything_else(trained_run, midi_dir, tmp_path, track, sweeps):
    song = midi_dir / "piece_5.mid"
    original = symusic.Score(str(song))
    ticks = get_bars_ticks(original)
    start, stop = ticks[2], ticks[4]  # bars 3-4
    request = Infill(song=str(song), bars=(3, 4), track=track)
    samples = generate(trained_run, tmp_path, "latest", None, request, num=2, sweeps=sweeps)
    targets = [0] if track == 0 else range(len(original.tracks))
    for s in samples:
        out = symusic.Score(str(s.midi))
        assert s.skipped_tokens == 0 and len(out.tracks) == len(original.tracks)
        for i, (old, new) in enumerate(zip(original.tracks, out.tracks, strict=True)):
            outside = [n for n in _notes(old) if not start <= n[0] < stop]
            assert [n for n in _notes(new) if not start <= n[0] < stop] == outside  # kept note for note
            if i not in targets:
                assert _notes(new) == _notes(old)
    spans = [[n for n in _notes(symusic.Score(str(s.midi)).tracks[0]) if start <= n[0] < stop] for s in samples]
    assert any(span != [n for n in _notes(original.tracks[0]) if start <= n[0] < stop] for span in spans)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--accompany", "{song}", "--add", "0"], "--add 0: a kept or added track already plays it"),
        (["--accompany", "{song}", "--add", "48", "--control", "track=2", "density=3"], "attribute controls need"),
        (["--infill", "{song}", "--bars", "9-40"], "has bars 1-12"),
        (["--sweeps", "2"], "--sweeps: sweeps revise what co-creation writes"),
    ],
)
def test_bad_options_are_one_line_errors(trained_run, midi_dir, tmp_path, capsys, extra, message):
    song = str(midi_dir / "piece_1.mid")
    args = ["generate", "--run", str(trained_run), "--checkpoint", "latest", "--out", str(tmp_path)]
    assert main([*args, *(a.format(song=song) for a in extra)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_requested_controls_open_the_bars_they_steer_and_play_no_part(midi_dir):
    """An untrained model with every control, random weights: a request's controls are forced where the layout
    puts them (the track-level ones in the first bar, the bar-level ones in their bars, after the block) and
    nowhere else; they decode into nothing, the melody comes back note for note and every token decodes."""
    config = load_config(TINY, [f"tokenizer.controls=[{','.join(CONTROLS)}]", "data.tasks={accompany: 1}"])
    tokenizer = build_tokenizer(config.tokenizer)
    layout = Layout(tokenizer, 1)
    song = symusic.Score(str(midi_dir / "piece_6.mid"))
    song.tracks = [song.tracks[0]]
    melody = layout.bars(tokenize_score(tokenizer, song))
    specs = ["track=1 density=2-4 polyphony=1-2", "track=1 bars=2-3 pitch_class=C,E,G density=3"]
    requests = parse_controls(specs, tokenizer)
    controls = steering(requests, {48: 1})
    given = plan_of(layout, melody, range(len(melody)), lambda bar, program: True, [48], controls)
    unsteered = plan_of(layout, melody, range(len(melody)), lambda bar, program: True, [48], lambda b, p: [])
    assert unsteered == plan_of(layout, melody, range(len(melody)), lambda bar, program: True, [48])
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, context=512), len(tokenizer)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    ends = (tokenizer["EOS_None"], tokenizer.pad_token_id)
    rows = sample(
        model,
        torch.full((2, 1), tokenizer["BOS_None"]),
        GenerateConfig(max_tokens=120 + given.forced),
        GivenGrammar(tokenizer),
        *ends,
        generator=torch.Generator().manual_seed(3),
        plan=[given],
    )
    track = [*requests[0].tokens["track_density"], *requests[0].tokens["track_polyphony"]]  # CONTROLS' order
    bar = [*requests[1].tokens["bar_density"], *requests[1].tokens["bar_pitch_class"]]
    expected = tokens_to_score(tokenizer, [t for b in melody for t in layout.plain(b)])[0].tracks[0]
    for row in rows.tolist():
        row = [t for t in row[1:] if t not in ends]
        opened = [i for i, t in enumerate(row) if t == layout.bar]
        assert len(opened) == len(melody)
        for b, i in enumerate(opened):
            block = layout.block(melody[b + 1] if b + 1 < len(melody) else None, lambda program: True)
            steer = [tokenizer["Program_48"], *(track if b == 0 else bar if b in (1, 2) else [])]
            opening = [*melody[b].head[1:], *block, *(steer if len(steer) > 1 else [])]
            assert row[i + 1 : i + 2 + len(opening)] == [*opening, row[i + 1 + len(opening)]]
            assert not layout.is_control[row[i + 1 + len(opening)]]
        assert int(layout.is_control[row].sum()) == len(track) + 2 * len(bar)  # nowhere else
        score, skipped = tokens_to_score(tokenizer, layout.played(row))
        assert skipped == 0
        by_program = {t.program: t for t in score.tracks}
        assert set(by_program) <= {0, 48}
        assert _notes(by_program[0]) == _notes(expected)
