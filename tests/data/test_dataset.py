import numpy as np
import pytest
import torch

from aurl.config import AugmentConfig
from aurl.data.dataset import IGNORE_INDEX, PreparedDataset, TokenBudgetBatchSampler, WindowDataset, augment
from aurl.training.curriculum import batch_size_for


@pytest.fixture(scope="module")
def data(prepared):
    return PreparedDataset(prepared)


def test_augmented_windows_hold_only_valid_ids_and_shift_pitches(data):
    t = data.tables
    cfg = AugmentConfig(transpose=(-6, 6), velocity=(-3, 3))
    ds = WindowDataset(data.pieces("train"), t, 64, True, cfg, seed=1)
    plain = WindowDataset(data.pieces("train"), t, 64, True, AugmentConfig(transpose=(0, 0), velocity=(0, 0)), 1)
    shifted = 0
    for i in range(len(ds)):
        item, ref = ds[i], plain[i]
        ids = item["input_ids"].numpy()
        assert ids.min() >= 0 and ids.max() < t.vocab_size
        a, b = t.pitch[ids], t.pitch[ref["input_ids"].numpy()]
        assert ((a >= 0) == (b >= 0)).all()  # only pitch tokens change into pitch tokens
        diff = set((a - b)[a >= 0].tolist())
        assert len(diff) <= 1  # one transposition per window
        shifted += bool(diff - {0})
    assert shifted > len(ds) // 2


def test_transpose_that_leaves_the_range_is_not_applied(data):
    t = data.tables
    top = int(np.max(np.nonzero(t.pitch_id >= 0)))
    ids = np.array([t.pitch_id[top], t.pitch_id[top - 12]])
    rng = np.random.default_rng(0)
    out = augment(ids, t, AugmentConfig(transpose=(3, 3), velocity=(0, 0)), rng)
    assert (out == ids).all()
    out = augment(ids, t, AugmentConfig(transpose=(-3, -3), velocity=(0, 0)), rng)
    assert t.pitch[out].tolist() == [top - 3, top - 15]


def test_short_piece_is_padded_and_masked_not_dropped(data):
    t = data.tables
    piece = data.pieces("train")[0][:10]
    ds = WindowDataset([piece], t, 64, True, None)
    assert len(ds) == 1
    item = ds[0]
    ids, targets = item["input_ids"], item["targets"]
    assert ids[0] == t.bos_id and ids[1:11].tolist() == piece.tolist() and ids[11] == t.eos_id
    assert (ids[12:] == t.pad_id).all()
    assert targets[:11].tolist() == [*piece.tolist(), t.eos_id]
    assert (targets[11:] == IGNORE_INDEX).all()


def test_validation_windows_tile_each_piece(data):
    pieces = data.pieces("train")[:3]
    ds = WindowDataset(pieces, data.tables, 64, False)
    covered = sum(int((ds[i]["targets"] != IGNORE_INDEX).sum()) for i in range(len(ds)))
    assert covered == sum(len(p) + 1 for p in pieces)  # every token and EOS is predicted exactly once


def test_items_replay_exactly_for_the_same_seed_and_epoch(data):
    make = lambda seed: WindowDataset(data.pieces("train"), data.tables, 64, True, AugmentConfig(), seed)  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    keys = [(i, 0, 64) for i in range(len(a))]
    assert all(torch.equal(a[k]["input_ids"], b[k]["input_ids"]) for k in keys)
    assert not all(torch.equal(a[k]["input_ids"], c[k]["input_ids"]) for k in keys)
    assert not all(torch.equal(a[k]["input_ids"], a[(k[0], 1, 64)]["input_ids"]) for k in keys)
    assert a[(0, 0, 32)]["input_ids"].shape == (32,)  # the sampler chooses the length


@pytest.mark.parametrize(("seq_len", "expected"), [(64, 64), (256, 32), (1024, 8), (4096, 4), (100000, 4)])
def test_batch_size_follows_the_token_budget(seq_len, expected):
    assert batch_size_for(seq_len, 8192, 4, 64) == expected


def _take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_sampler_covers_every_window_once_per_epoch_within_budget():
    seq_len, budget = 128, 1000
    batch = batch_size_for(seq_len, budget, 2, 64)
    sampler = TokenBudgetBatchSampler(56, lambda i: (seq_len, batch), seed=3)
    epoch0 = _take(sampler, 56 // batch)
    assert all(len(b) * seq_len <= budget for b in epoch0)
    assert sorted(k[0] for b in epoch0 for k in b) == list(range(56))
    assert {k[1] for b in epoch0 for k in b} == {0} and {k[2] for b in epoch0 for k in b} == {seq_len}
    epoch1 = _take(sampler, 56 // batch)
    assert {k[1] for b in epoch1 for k in b} == {1}
    assert [k[0] for b in epoch1 for k in b] != [k[0] for b in epoch0 for k in b]


def test_sampler_resumes_mid_stream_and_shards_by_rank():
    plan = lambda i: (64, 3 + i % 2)  # noqa: E731
    full = _take(TokenBudgetBatchSampler(10, plan, seed=1), 9)
    resumed = TokenBudgetBatchSampler(10, plan, seed=1)
    resumed.load_state_dict({"batches": 4})
    assert _take(resumed, 5) == full[4:]
    ranks = [_take(TokenBudgetBatchSampler(10, plan, seed=1, rank=r, world_size=2), 4) for r in (0, 1)]
    single = _take(TokenBudgetBatchSampler(10, lambda i: (64, 2 * plan(i)[1]), seed=1), 4)
    assert [a + b for a, b in zip(*ranks, strict=True)] == single


def test_segments_are_cut_at_bars_padded_and_masked(data):
    from aurl.data.dataset import SegmentDataset
    from aurl.data.tokenize import bar_token_ids

    bars = bar_token_ids(data.tokenizer)
    t = data.tables
    ds = SegmentDataset(data.pieces("train"), t, bars, 2, 64, train=False)
    for i in range(len(ds)):
        item = ds[i]
        ids, mask = item["input_ids"], item["mask"]
        real = ids[mask]
        assert real[0] == t.bos_id and real[1] in bars  # opens on a bar
        assert int(torch.isin(real, torch.tensor(bars)).sum()) <= 2  # two bars at most
        assert (ids[~mask] == t.pad_id).all() and int(item["weight"]) == int((item["targets"] >= 0).sum())
    train = SegmentDataset(data.pieces("train"), t, bars, 2, 64, train=True, augment_cfg=AugmentConfig())
    assert len(train) > len(ds)  # a training segment starts at every bar
