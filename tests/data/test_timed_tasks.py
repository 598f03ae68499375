"""The time-ordered layout and its training windows: every note kept, given notes first at each onset and
anticipated a bar ahead, given tokens never targets."""

import pytest

from aurl.config import DataConfig
from aurl.data.dataset import IGNORE_INDEX, PreparedDataset
from aurl.data.layout import Bar, Layout, run_layout
from aurl.data.timed_tasks import TimedTaskDataset
from aurl.generation.generate import tokens_to_score


def _notes(tokenizer, ids) -> list[tuple[int, int, int, int]]:
    score, skipped = tokens_to_score(tokenizer, [int(t) for t in ids])
    assert skipped == 0
    return sorted((-1 if t.is_drum else t.program, n.time, n.pitch, n.duration) for t in score.tracks for n in t.notes)


def _programs(bars: list[Bar]) -> list[int]:
    return sorted({n.program for bar in bars for onset in bar.onsets for n in onset.notes})


def _opened(ids: list[int], layout: Layout) -> list[tuple[int, list[int]]]:
    """Per Bar of a laid-out stream: where it is and its anticipated block's inside."""
    out = []
    for i, t in enumerate(ids):
        if t == layout.bar:
            start = ids.index(layout.start, i)
            out.append((i, ids[start + 1 : ids.index(layout.end, start)]))
    return out


@pytest.mark.parametrize("ahead", [1, 2])
def test_a_laid_out_piece_plays_every_note_and_anticipates_the_given_ones(prepared, ahead):
    data = PreparedDataset(prepared)
    tokenizer = data.tokenizer
    layout = Layout(tokenizer, ahead)
    for piece in data.pieces("train"):
        bars = layout.bars(piece)
        melody = _programs(bars)[0]
        laid = layout.lay_out(bars, len(bars), lambda bar, program, melody=melody: program == melody)
        assert _notes(tokenizer, layout.played(laid.ids)) == _notes(tokenizer, piece)
        for b, (at, inside) in enumerate(_opened(laid.ids, layout)):
            assert laid.ids[at + 1] == bars[b].head[1]  # the time signature, then the block
            later = bars[b + ahead] if b + ahead < len(bars) else Bar([])
            # the block, read as a bar, holds the melody's notes of the bar `ahead` later, nothing else
            expected = [n for n in _notes(tokenizer, layout.plain(later)) if n[0] == melody]
            assert _notes(tokenizer, [*later.head, *inside]) == expected if later.head else inside == []
        # what is given: the time signatures, the blocks and the melody's notes; never a written note
        given = [t for t, g in zip(laid.ids, laid.given, strict=True) if g]
        written = [t for t, g in zip(laid.ids, laid.given, strict=True) if not g]
        assert {layout.value[t] for t in given if layout.kind[t] == 3} == {melody}
        assert melody not in {layout.value[t] for t in written if layout.kind[t] == 3}
        assert layout.start not in written and layout.end not in written


def test_given_notes_come_first_at_each_onset(prepared):
    data = PreparedDataset(prepared)
    layout = Layout(data.tokenizer, 1)
    piece = data.pieces("train")[0]
    bars = layout.bars(piece)
    last = _programs(bars)[-1]  # MidiTok writes it last at an onset; given, it comes first
    laid = layout.lay_out(bars, len(bars), lambda bar, program: program == last)
    for bar in layout.bars(layout.played(laid.ids)):
        for onset in bar.onsets:
            programs = [n.program for n in onset.notes]
            assert programs == sorted(programs, key=lambda p: p != last)


def _windows(prepared, tasks: dict[str, float], length: int = 64, **data) -> tuple[TimedTaskDataset, Layout]:
    prepared_data = PreparedDataset(prepared)
    cfg = DataConfig(tasks=tasks, seq_len=length, **data)
    layout = run_layout(prepared_data.tokenizer, cfg)
    pieces = prepared_data.pieces("train")
    return TimedTaskDataset(pieces, prepared_data.tables, layout, cfg, True, None, seed=5), layout


@pytest.mark.parametrize("task", ["accompany", "infill"])
def test_task_windows_fit_replay_and_never_target_given_tokens(prepared, task):
    dataset, layout = _windows(prepared, {task: 1.0}, length=128)
    written_programs, given_programs = set(), set()
    for index in range(len(dataset)):
        item = dataset[(index, 3, 128)]
        again = dataset[(index, 3, 128)]  # a pure function of its key
        assert item["input_ids"].shape == (128,) and bool((item["targets"] == again["targets"]).all())
        targets = item["targets"][item["targets"] != IGNORE_INDEX].numpy()
        assert item["weight"] == len(targets) > 0
        assert layout.start not in targets and layout.end not in targets  # blocks are read, never predicted
        assert targets[-1] == dataset.tables.eos_id  # the window ends as a request does
        ids = item["input_ids"].tolist()
        assert ids[0] == dataset.tables.bos_id and ids[1] == layout.bar
        opened = [i for i, t in enumerate(ids) if t == layout.bar and i + 2 < len(ids)]
        assert all(ids[i + 2] == layout.start for i in opened)  # Bar, TimeSig, block
        written_programs |= {int(layout.value[t]) for t in targets if layout.kind[t] == 3}
        inputs = [t for t, target in zip(ids[1:], item["targets"].tolist(), strict=False) if target == IGNORE_INDEX]
        given_programs |= {int(layout.value[t]) for t in layout.played(inputs) if layout.kind[t] == 3}
    assert written_programs and given_programs  # some tracks given, some written


def test_accompany_windows_write_some_tracks_and_are_given_the_rest(prepared):
    dataset, layout = _windows(prepared, {"accompany": 1.0}, length=256, drop_tracks=0.0)
    for index in range(len(dataset)):
        item = dataset[(index, 0, 256)]
        real = item["input_ids"] != dataset.tables.pad_id
        ids, targets = item["input_ids"][real].tolist(), item["targets"][real].tolist()
        played = layout.played(ids[1:])
        written = {int(layout.value[t]) for t in targets if t >= 0 and layout.kind[t] == 3}
        every = {int(layout.value[t]) for t in played if layout.kind[t] == 3}
        assert written and len(written) < len(every)  # some tracks written, the others given
        given = [t for t, target in zip(ids[1:], targets, strict=False) if target == IGNORE_INDEX]
        assert not written & {int(layout.value[t]) for t in layout.played(given) if layout.kind[t] == 3}
