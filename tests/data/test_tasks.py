"""Multitrack (MMM) tokenization and the training tasks' windows."""

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from aurl.config import load_config
from aurl.data.dataset import IGNORE_INDEX, PreparedDataset
from aurl.data.multitrack import Multitrack
from aurl.data.tasks import TaskDataset
from tests.conftest import MMM, TINY


def _dataset(prepared, tasks, controls=None, **data):
    """Training windows that hold a whole piece: the opening window of piece 0 with room for all its bars."""
    sets = [
        *MMM,
        "data.seq_len=4096",
        "model.context=4096",
        "data.window_bars=64",
        "train.batch_tokens=8192",
        f"data.tasks={json.dumps(tasks)}",
    ]
    sets += [f"data.{k}={json.dumps(v)}" for k, v in data.items()]
    config = load_config(TINY, sets)
    prepared_data = PreparedDataset(prepared)
    piece = prepared_data.pieces("train")[0]
    return TaskDataset([piece], prepared_data.tokenizer, config.data, True, None, 0, controls), piece


def _item_ids(item) -> list[int]:
    """The item's framed tokens: its inputs up to the last target, then that target (EOS or a cut)."""
    last = int(torch.nonzero(item["targets"] != IGNORE_INDEX).max())
    return [*item["input_ids"][: last + 1].tolist(), int(item["targets"][last])]


def test_mmm_tracks_come_back_from_the_prepared_tokens(mmm_prepared, midi_dir):
    import symusic

    data = PreparedDataset(mmm_prepared)
    mt = Multitrack(data.tokenizer)
    entry = next(e for e in data.manifest["files"] if e["split"] == "train")
    piece = data.tokens[entry["offset"] : entry["offset"] + entry["length"]]
    tracks = mt.tracks(np.asarray(piece))
    original = symusic.Score(str(midi_dir / entry["name"]))
    assert len(tracks) == len(original.tracks) == 3  # melody, bass, drums: one MMM track each
    decoded = data.tokenizer.decode(piece.tolist())
    assert [len(t.notes) for t in decoded.tracks] == [len(t.notes) for t in original.tracks]
    assert mt.errors(piece.tolist()) == 0


def test_continue_windows_are_the_piece_as_it_is(mmm_prepared):
    dataset, piece = _dataset(mmm_prepared, {"continue": 1.0}, controls=[])
    mt = dataset.mt
    assert _item_ids(dataset[(0, 0, 4096)]) == [mt.bos, *piece.tolist(), mt.eos]


@pytest.mark.parametrize("epoch", range(4))
def test_track_windows_put_one_track_last_and_the_others_before_it(mmm_prepared, epoch):
    dataset, piece = _dataset(mmm_prepared, {"accompany": 1.0}, controls=[])
    mt = dataset.mt
    original = [tuple(t.ids(mt.track_end)) for t in mt.tracks(np.asarray(piece))]
    ids = _item_ids(dataset[(0, epoch, 4096)])
    assert ids[0] == mt.bos and ids[-1] == mt.eos
    tracks = [tuple(t.ids(mt.track_end)) for t in mt.tracks(np.asarray(ids))]
    assert Counter(tracks) == Counter(original)  # every track once, note for note
    assert sum(len(t) for t in tracks) + 2 == len(ids)


@pytest.mark.parametrize("epoch", range(6))
def test_infill_windows_move_a_span_of_bars_after_the_tracks(mmm_prepared, epoch):
    dataset, piece = _dataset(mmm_prepared, {"infill": 1.0}, controls=[], infill_bars=[2, 3])
    mt = dataset.mt
    ids = _item_ids(dataset[(0, epoch, 4096)])
    holes = [i for i, t in enumerate(ids) if t == mt.infill_bar]
    assert 2 <= len(holes) <= 3 and holes == list(range(holes[0], holes[0] + len(holes)))  # one contiguous span
    last_track = max(i for i, t in enumerate(ids) if t == mt.track_end)
    fills, rest = [], ids[last_track + 1 : -1]
    while rest:
        assert rest[0] == mt.infill_start
        end = rest.index(mt.infill_end)
        fills.append(rest[1:end])
        rest = rest[end + 1 :]
    assert len(fills) == len(holes) and all(f[0] == mt.bar for f in fills)
    # putting the bars back where their placeholders stand gives the piece again
    restored = ids[: holes[0]] + [t for f in fills for t in f] + ids[holes[-1] + 1 : last_track + 1]
    assert restored == [mt.bos, *piece.tolist()]
    item = dataset[(0, epoch, 4096)]
    assert (item["targets"][[h - 1 for h in holes]] == IGNORE_INDEX).all()  # placeholders are given


def test_controls_are_midiTok_own_and_land_in_their_track_and_bar(mmm_prepared):
    """Every control, for every track and bar: the ones aurl inserts equal those MidiTok's own encoder
    computes for the file, track by track and bar by bar."""
    dataset, piece = _dataset(mmm_prepared, {"continue": 1.0}, control_tracks=[1.0, 1.0], control_bars=[1.0, 1.0])
    mt, tokenizer = dataset.mt, dataset.mt.tokenizer
    ids = _item_ids(dataset[(0, 0, 4096)])
    score = tokenizer.decode(piece.tolist())
    reference = tokenizer.encode(score.copy(), attribute_controls_indexes=_all_controls(tokenizer, score)).ids

    def controls_by_bar(seq):
        out = []
        for track in mt.tracks(np.asarray(seq)):
            header = sorted(int(t) for t in track.header if mt.is_control[t])
            out.append((header, [sorted(int(t) for t in bar if mt.is_control[t]) for bar in track.bars]))
        return out

    ours = controls_by_bar(ids)
    assert ours == controls_by_bar(reference)
    assert sum(len(h) for h, _ in ours) > 0 and sum(len(b) for _, bars in ours for b in bars) > 0
    # placed right after the Program token (track) and right after the Bar token (bar)
    for track in mt.tracks(np.asarray(ids)):
        assert not mt.is_control[track.header[:2]].any() and mt.is_control[track.header[2:]].all()
        for bar in track.bars:
            flags = mt.is_control[bar]
            assert not flags[0] and (flags.sum() == 0 or flags[1 : 1 + flags.sum()].all())
    # without its controls the window is the piece
    assert [t for t in ids if not mt.is_control[t]] == [mt.bos, *piece.tolist(), mt.eos]
    # the controls are inputs only: every other token is a target, and the weight counts the targets
    item = dataset[(0, 0, 4096)]
    targets = item["targets"][: len(ids) - 1]
    assert ((targets == IGNORE_INDEX) == torch.from_numpy(mt.is_control[ids[1:]])).all()
    assert int(item["weight"]) == int((item["targets"] != IGNORE_INDEX).sum())


def _all_controls(tokenizer, score):
    from miditok.attribute_controls import BarAttributeControl
    from miditok.utils import get_bars_ticks

    bars = list(range(len(get_bars_ticks(score, only_notes_onsets=True))))
    return {
        i: {j: bars if isinstance(c, BarAttributeControl) else True for j, c in enumerate(tokenizer.attribute_controls)}
        for i in range(len(score.tracks))
    }


def test_task_windows_fit_the_window_length_and_replay_for_a_key(mmm_prepared):
    sets = [*MMM, "data.seq_len=128", "data.window_bars=8", f"data.dataset={mmm_prepared}"]
    config = load_config(TINY, sets)
    data = PreparedDataset(mmm_prepared)
    train_set = TaskDataset(data.pieces("train"), data.tokenizer, config.data, True, config.data.augment, 0)
    for key in [(i, e, 128) for i in range(len(train_set)) for e in range(2)]:
        item = train_set[key]
        assert item["input_ids"].shape == (128,) and int(item["weight"]) <= 128
        assert train_set[key]["input_ids"].equal(item["input_ids"])  # a pure function of the key
    valid = TaskDataset(data.pieces("valid"), data.tokenizer, config.data, False)
    mt = valid.mt
    # evaluation windows tile each piece: every note token of the split is scored exactly once
    scored = Counter(t for i in range(len(valid)) for t in _item_ids(valid[i]) if data.tables.pitch[t] >= 0)
    whole = Counter(int(t) for p in data.pieces("valid") for t in p if data.tables.pitch[t] >= 0)
    assert scored == whole and not any(mt.is_control[t] for i in range(len(valid)) for t in _item_ids(valid[i]))


def test_a_multitrack_run_learns_and_resumes_exactly(mmm_prepared, tmp_path):
    from aurl.training.run import train

    sets = [*MMM, f"data.dataset={mmm_prepared}", "data.seq_len=256", "model.context=256", "data.window_bars=4"]
    sets += ["train.max_steps=20", "train.save_interval=10", "train.eval_interval=10", "train.keep_last=5"]
    sets += ["train.log_interval=1", "train.peak_flops=1e11", "train.deterministic=true"]
    config = load_config(TINY, sets)
    whole = tmp_path / "whole"
    train(config, whole, progress=False, log=lambda s: None)
    log = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    valid = [m["loss"] for m in log if m["split"] == "valid"]
    assert valid[-1] < valid[0]

    resumed = tmp_path / "resumed"  # as if killed right after step 10's checkpoint
    shutil.copytree(whole, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_20")
    (resumed / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in log if m["step"] <= 10))
    train(config, resumed, resume=True, progress=False, log=lambda s: None)
    again = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    train_losses = {m["step"]: m["loss"] for m in log if m["split"] == "train"}
    assert {m["step"]: m["loss"] for m in again if m["split"] == "train"} == train_losses
