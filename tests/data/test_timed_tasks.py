"""The time-ordered layout and its training windows: every note kept, given notes first at each onset and
anticipated a bar ahead, written tracks steered by controls of their own notes, every token but the task token a
target (with data.given_targets=false, which the tests of the layout use to tell given from written: the written
ones alone)."""

import itertools

import pytest
import torch

from aurl.config import AugmentConfig, DataConfig, load_config
from aurl.data.controls import CONTROLS
from aurl.data.dataset import IGNORE_INDEX, PreparedDataset
from aurl.data.layout import Bar, Layout, run_layout, task_ids
from aurl.data.timed_tasks import TimedTaskDataset
from aurl.data.tokenize import TokenTables, build_tokenizer
from aurl.generation.generate import tokens_to_score
from tests.conftest import TINY


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
        laid = layout.lay_out(bars, range(len(bars)), lambda bar, program, melody=melody: program == melody)
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
    laid = layout.lay_out(bars, range(len(bars)), lambda bar, program: program == last)
    for bar in layout.bars(layout.played(laid.ids)):
        for onset in bar.onsets:
            programs = [n.program for n in onset.notes]
            assert programs == sorted(programs, key=lambda p: p != last)


def _in_suffix(ids: list[int], layout: Layout) -> list[bool]:
    """Per id, whether it is inside a block of the bars after a gap (its start and end included)."""
    out, inside = [], False
    for t in ids:
        inside |= t == layout.suffix_start
        out.append(inside)
        inside &= t != layout.suffix_end
    return out


def _windows(prepared, tasks: dict[str, float], length: int = 64, **data) -> tuple[TimedTaskDataset, Layout]:
    prepared_data = PreparedDataset(prepared)
    cfg = DataConfig(tasks=tasks, seq_len=length, **data)
    layout = run_layout(prepared_data.tokenizer, cfg)
    pieces = prepared_data.pieces("train")
    return TimedTaskDataset(pieces, prepared_data.tables, layout, cfg, True, None, seed=5), layout


@pytest.mark.parametrize("task", ["accompany", "infill"])
def test_task_windows_fit_replay_and_never_target_given_tokens(prepared, task):
    dataset, layout = _windows(prepared, {task: 1.0}, length=128, given_targets=False)
    written_programs, given_programs = set(), set()
    for index in range(len(dataset)):
        item = dataset[(index, 3, 128)]
        again = dataset[(index, 3, 128)]  # a pure function of its key
        assert item["input_ids"].shape == (128,) and bool((item["targets"] == again["targets"]).all())
        targets = item["targets"][item["targets"] != IGNORE_INDEX].numpy()
        assert item["weight"] == len(targets) > 0
        assert layout.start not in targets and layout.end not in targets  # blocks are read, never predicted
        # the window ends as a request does: EOS where the piece ends, else the next bar's Bar (EOS given)
        assert targets[-1] in (dataset.tables.eos_id, layout.bar)
        ids = item["input_ids"].tolist()
        assert ids[:2] == [dataset.tables.bos_id, *task_ids(layout.tokenizer, task)]
        aside = _in_suffix(ids, layout)
        opened = [i for i, t in enumerate(ids[:-2]) if t == layout.bar and not aside[i] and ids[i + 1] != layout.eos]
        assert all(ids[i + 2] == layout.start for i in opened)  # Bar, TimeSig, block
        written_programs |= {int(layout.value[t]) for t in targets if layout.kind[t] == 3}
        inputs = [t for t, target in zip(ids[1:], item["targets"].tolist(), strict=False) if target == IGNORE_INDEX]
        given_programs |= {int(layout.value[t]) for t in layout.played(inputs) if layout.kind[t] == 3}
    assert written_programs and given_programs  # some tracks given, some written


def test_accompany_windows_write_some_tracks_and_are_given_the_rest(prepared):
    dataset, layout = _windows(prepared, {"accompany": 1.0}, length=256, drop_tracks=0.0, given_targets=False)
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


def _steered(prepared, tasks: dict[str, float], length: int, **data) -> tuple[TimedTaskDataset, Layout]:
    """Windows of the prepared pieces, transposed, with a tokenizer that has every control: its base ids are
    the prepared ones (aurl attaches the controls after them)."""
    prepared_data = PreparedDataset(prepared)
    config = load_config(TINY, [f"tokenizer.controls=[{','.join(CONTROLS)}]", "data.tasks={accompany: 1}"])
    tokenizer = build_tokenizer(config.tokenizer)
    assert all(tokenizer.vocab[t] == i for t, i in prepared_data.tokenizer.vocab.items())
    cfg = DataConfig(tasks=tasks, seq_len=length, given_targets=False, **data)
    layout = run_layout(tokenizer, cfg)
    tables = TokenTables.from_tokenizer(tokenizer)
    pieces = prepared_data.pieces("train")
    return TimedTaskDataset(pieces, tables, layout, cfg, True, AugmentConfig(), seed=5), layout


def _read(layout: Layout, ids: list[int], targets: list[int]) -> list[tuple[dict[int, list[str]], list[tuple]]]:
    """Per bar of an item (BOS first): its control groups {program: control tokens} and its notes (program,
    pitch, written), checking on the way that every group sits in the bar's head, after its block and
    before its first Position, and is no target of the loss."""
    tokenizer, out, head, block, group = layout.tokenizer, [], False, False, None
    for i in range(1, len(ids)):
        t, target = ids[i], targets[i - 1]
        if t == layout.bar and not block:
            out.append(({}, []))
            head = True
        elif t in (layout.start, layout.end, layout.suffix_start, layout.suffix_end):
            block = t in (layout.start, layout.suffix_start)
        elif block:
            continue
        elif layout.is_control[t]:
            assert head and target == IGNORE_INDEX
            out[-1][0][group].append(tokenizer[t])
        elif layout.kind[t] == 3 and layout.is_control[ids[i + 1]]:
            assert head and target == IGNORE_INDEX and (ids[i - 1] == layout.end or layout.is_control[ids[i - 1]])
            group = int(layout.value[t])
            out[-1][0][group] = []
        elif layout.kind[t] == 3:
            pitch = int(tokenizer[ids[i + 1]].split("_")[1])
            out[-1][1].append((int(layout.value[t]), pitch, target != IGNORE_INDEX))
        elif layout.kind[t] == 2:
            head = False
    return out


@pytest.mark.parametrize("task", ["accompany", "infill"])
def test_written_tracks_are_steered_by_their_own_notes_in_each_bar_head(prepared, task):
    """Every control drawn: each bar's head steers each track written in it by the controls of its own
    (transposed) notes, counted here independently; given tracks are never steered, and controls are never
    targets."""
    dataset, layout = _steered(prepared, {task: 1.0}, 256, control_tracks=(1.0, 1.0), control_bars=(1.0, 1.0))
    steered = 0
    for index in range(len(dataset)):
        item = dataset[(index, 2, 256)]
        real = item["input_ids"] != dataset.tables.pad_id
        ids, targets = item["input_ids"][real].tolist(), item["targets"][real].tolist()
        # the controls fit beside the window's bars: it ends as a request does
        assert [t for t in targets if t != IGNORE_INDEX][-1] in (dataset.tables.eos_id, layout.bar)
        bars = _read(layout, ids, targets)
        first_written: dict[int, int] = {}
        for b, (groups, notes) in enumerate(bars):
            for program in {p for p, _, written in notes if written}:
                first_written.setdefault(program, b)
                pitches = [pitch for p, pitch, _ in notes if p == program]
                expected = [f"ACBarNoteDensity_{len(pitches)}"]
                expected += [f"ACBarPitchClass_{c}" for c in sorted({pitch % 12 for pitch in pitches})]
                found = [t for t in groups[program] if t.startswith(("ACBarNoteDensity", "ACBarPitchClass"))]
                assert found == expected
                steered += 1
            assert not {p for p, _, written in notes if not written} & set(groups)  # given tracks: none
        for program, b in first_written.items():  # notes per bar from its first written bar to its last onset
            counts = [sum(p == program for p, _, _ in notes) for _, notes in bars[b:]]
            counts = counts[: max(i for i, n in enumerate(counts) if n) + 1]
            track = [t for t in bars[b][0][program] if t.startswith("ACTrackNoteDensity")]
            assert track == [f"ACTrackNoteDensityMin_{min(counts)}", f"ACTrackNoteDensityMax_{max(counts)}"]
    assert steered > 0


def test_controls_are_a_random_share_and_continue_windows_have_none(prepared):
    dataset, layout = _steered(prepared, {"continue": 0.5, "accompany": 0.5}, 256)
    groups, unsteered, plain = 0, 0, 0
    for index in range(len(dataset)):
        item = dataset[(index, 1, 256)]
        ids, targets = item["input_ids"].tolist(), item["targets"].tolist()
        if layout.start not in ids:  # a continue window: MidiTok's tokens as they are
            assert not layout.is_control[ids].any()
            plain += 1
            continue
        for steering, notes in _read(layout, ids, targets):
            written = {p for p, _, w in notes if w}
            groups += len(steering)
            unsteered += len(written - set(steering))
    assert plain and groups and unsteered  # some written bars steered, some not


def test_every_window_from_bos_says_its_task_and_never_targets_it(prepared):
    dataset, layout = _windows(prepared, {"continue": 1.0, "accompany": 1.0, "infill": 1.0}, length=256)
    tasks = {task_ids(layout.tokenizer, task)[0]: task for task in ("free", "accompany", "infill")}
    seen = set()
    for epoch in range(3):
        for index in range(len(dataset)):
            item = dataset[(index, epoch, 256)]
            ids = item["input_ids"].tolist()
            if ids[0] != dataset.tables.bos_id:
                continue  # a continue window from inside a piece: no BOS, no task
            assert ids[1] in tasks and item["targets"][0] == IGNORE_INDEX  # given, as generation forces it
            assert not set(ids[2:]) & set(tasks) and not set(item["targets"].tolist()) & set(tasks)
            seen.add(tasks[ids[1]])
    assert seen == {"free", "accompany", "infill"}
    valid = TimedTaskDataset(PreparedDataset(prepared).pieces("valid"), dataset.tables, layout, dataset.cfg, False)
    first = valid[0]  # evaluation windows read as free pieces
    assert first["input_ids"][1] == task_ids(layout.tokenizer, "free")[0] and first["targets"][0] == IGNORE_INDEX


def test_every_token_after_the_task_token_is_a_target_unless_only_the_written_ones_are(prepared):
    """By default a co-creation window is trained on every token but its task token and the EOS given after
    the next bar's Bar where the piece goes on (it ends the request, not the piece: a free piece must not learn
    to stop at a bar line); with data.given_targets=false on the same window's written tokens alone."""
    every, _ = _windows(prepared, {"accompany": 1.0, "infill": 1.0}, length=256)
    written, layout = _windows(prepared, {"accompany": 1.0, "infill": 1.0}, length=256, given_targets=False)
    tasks = [task_ids(layout.tokenizer, task)[0] for task in ("accompany", "infill")]
    fewer = ended = 0
    for index in range(len(every)):
        a, b = every[(index, 0, 256)], written[(index, 0, 256)]
        assert torch.equal(a["input_ids"], b["input_ids"])
        real = a["input_ids"][1:] != every.tables.pad_id  # what targets[:-1] predict
        targeted = a["targets"] != IGNORE_INDEX
        assert a["input_ids"][0] == every.tables.bos_id and a["input_ids"][1] in tasks
        last = int(real.sum())  # targets[last - 1] is the window's last token
        ends_request = bool(a["input_ids"][last - 1] == layout.bar and a["input_ids"][last] == layout.eos)
        assert not targeted[0] and bool(targeted[1 : last - 1].all())  # the task token is read
        assert bool(targeted[last - 1]) != ends_request  # an EOS that ends the request only is read too
        ended += ends_request
        assert not bool((b["targets"] != IGNORE_INDEX)[~targeted].any())  # the written ones, a part of them
        fewer += int(a["weight"] > b["weight"])
    assert fewer == len(every) and ended


def _key(bar: Bar) -> tuple:
    """A bar's meter and notes at their onsets, whatever their order at an onset."""
    return tuple(bar.head[1:]), sorted((o.position, tuple(o.head), tuple(n.ids)) for o in bar.onsets for n in o.notes)


@pytest.mark.parametrize("suffix", [1, 2])
def test_the_block_holds_exactly_the_bars_after_the_gap(prepared, suffix):
    """Every infill window: the bars before the gap and the gap itself are consecutive bars of its piece, and
    its block holds, as MidiTok wrote them, the next bars of that piece, at most data.suffix_bars, given; the
    block is empty only where nothing of the window follows the gap."""
    dataset, layout = _windows(prepared, {"infill": 1.0}, length=512, suffix_bars=suffix, given_targets=False)
    counts = set()
    for index, epoch in itertools.product(range(len(dataset)), range(2)):
        item = dataset[(index, epoch, 512)]
        real = item["input_ids"] != dataset.tables.pad_id
        ids, targets = item["input_ids"][real].tolist(), item["targets"][real].tolist()
        start, end = ids.index(layout.suffix_start), ids.index(layout.suffix_end)
        assert all(target == IGNORE_INDEX for target in targets[start - 1 : end])  # given
        block = layout.bars(ids[start + 1 : end])
        middle = [t for t in ids[end + 1 :] if t != layout.eos]
        middle = middle[: -1 if middle[-1] == layout.bar else None]  # the next bar's Bar that ends it
        read = layout.bars(layout.played(ids[2:start])) + layout.bars(layout.played(middle))
        piece = layout.bars(dataset.pieces[dataset.windows[index].piece])
        found = [
            j
            for j in range(len(piece) - len(read) + 1)
            if all(_key(piece[j + i]) == _key(bar) for i, bar in enumerate(read))
        ]
        assert found, "the window's bars are not consecutive bars of its piece"
        after = [piece[found[0] + len(read) + i] for i in range(len(block))]
        assert ids[start + 1 : end] == [t for bar in after for t in layout.plain(bar)]
        counts.add(len(block))
    assert max(counts) == suffix and 0 in counts  # as many as asked, and a gap at the window's end
