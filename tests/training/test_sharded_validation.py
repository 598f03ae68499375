"""Validation shared out over ranks: the same windows as one process, each evaluated once, the same loss."""

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from aurl.config import load_config
from aurl.data.dataset import EvalBatchSampler, PreparedDataset
from aurl.training.distributed import DistEnv
from aurl.training.run import build_trainer
from tests.conftest import TINY

# Batches of 2 windows, and an odd count of them: the ranks' shares differ (2 batches and 1), and so do
# their target counts, which is where an average of the ranks' averages would go wrong.
OVERRIDES = ["train.batch_tokens=128", "train.min_batch=2", "train.max_batch=2", "train.eval_batches=3"]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("batches", [1, 3, 4, 100])
def test_the_ranks_shares_are_the_batches_of_one_process(world, batches):
    windows, batch = 11, 3  # 4 batches in all, the last one partial
    one = EvalBatchSampler(windows, batch, batches)
    shares = [EvalBatchSampler(windows, batch, batches, rank, world) for rank in range(world)]
    assert list(one) == [list(range(i, min(i + batch, windows))) for i in range(0, batch * min(batches, 4), batch)]
    assert len({len(s) for s in shares}) == 1  # every rank runs its forwards in step with the others
    counted = [b for s in shares for b, c in zip(s, s.counted, strict=True) if c]
    assert sorted(counted) == list(one)


def _trainer(prepared, run_dir, strategy: str, env: DistEnv):
    sets = [f"data.dataset={prepared}", "train.peak_flops=1e11", f"train.strategy={strategy}", *OVERRIDES]
    config = load_config(TINY, sets)
    run_dir.mkdir(parents=True, exist_ok=True)
    return build_trainer(config, PreparedDataset(prepared), run_dir, env, torch.device("cpu"), False, lambda s: None)


def _counting(trainer) -> list[int]:
    """Counts the targets of each batch the objective sees."""
    seen: list[int] = []
    objective = trainer.objective

    def counted(batch):
        seen.append(int(batch["weight"].sum()))
        return objective(batch)

    trainer.objective = counted
    return seen


def _evaluate_on_rank(rank, world, prepared, run_dir, strategy, out):
    dist.init_process_group("gloo", init_method=f"file://{run_dir / 'store'}", rank=rank, world_size=world)
    trainer = _trainer(prepared, run_dir, strategy, DistEnv(rank, 0, world))
    seen = _counting(trainer)
    valid = trainer.evaluate()
    gathered = [None] * world
    dist.all_gather_object(gathered, {"valid": valid, "seen": seen})
    if rank == 0:
        out.write_text(json.dumps(gathered))
    dist.destroy_process_group()
    # Done: leave without the interpreter's teardown, where the threads of FSDP's gloo process group abort
    # the process now and then (about one exit in ten with torch 2.13), after the work is done.
    os._exit(0)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_validate_like_one_process_over_the_same_windows(prepared, tmp_path, strategy):
    one = _trainer(prepared, tmp_path / "one", strategy, DistEnv())
    seen_one = _counting(one)
    expected = one.evaluate()
    assert len(seen_one) == 3

    out = tmp_path / "ranks.json"
    (tmp_path / "two").mkdir()
    args = (2, prepared, tmp_path / "two", strategy, out)
    mp.spawn(_evaluate_on_rank, args=args, nprocs=2)
    ranks = json.loads(out.read_text())

    # Rank 0 evaluated batches 0 and 2, rank 1 batch 1 and then batch 0's first window again, uncounted.
    assert [len(r["seen"]) for r in ranks] == [2, 2]
    assert ranks[0]["seen"] + ranks[1]["seen"][:1] == [seen_one[0], seen_one[2], seen_one[1]]
    for r in ranks:
        assert r["valid"] == pytest.approx(expected, rel=1e-6, abs=1e-7)
