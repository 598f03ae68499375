"""The trainer's components on their own: the checkpoint's format (an old one resumes, a newer one is refused
in one line), the stability component's state, and the one seeding of a run's random generators."""

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from aurl.cli import main
from aurl.config import StabilityConfig, load_config
from aurl.data.dataset import PreparedDataset
from aurl.training.distributed import DistEnv
from aurl.training.rng import RandomState
from aurl.training.run import build_trainer
from aurl.training.stability import Stability
from tests.conftest import TINY

SETS = ["train.max_steps=8", "train.save_interval=2", "train.eval_interval=4", "train.log_interval=1"]
SETS += ["train.keep_last=10", "train.deterministic=true", "train.peak_flops=1e11", "model.dropout=0.1"]


def _train(run: Path, prepared: Path) -> None:
    args = ["train", "--config", str(TINY), "--run-dir", str(run), "--no-progress", "--set", f"data.dataset={prepared}"]
    assert main([*args, *(x for s in SETS for x in ("--set", s))]) == 0


def _losses(run: Path) -> dict[tuple[int, str], float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {(m["step"], m["split"]): m["loss"] for m in lines if m["split"] in ("train", "valid")}


def _rewrite_state(checkpoint: Path, state: dict) -> None:
    """Replace a checkpoint's trainer_state.pt, its sha256 in the manifest with it."""
    torch.save(state, checkpoint / "trainer_state.pt")
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["files"]["trainer_state.pt"] = hashlib.sha256((checkpoint / "trainer_state.pt").read_bytes()).hexdigest()
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))


def _as_format_1(state: dict) -> dict:
    """The layout aurl wrote before components kept their own state: the trainer's fields side by side."""
    validation, stability = state["validation"], state["stability"]
    return {
        **{k: state[k] for k in ("step", "seconds", "micro_batches", "windows_seen")},
        "lr_scale": validation["lr_scale"] * stability["lr_scale"],
        "bad_in_a_row": stability["bad_in_a_row"],
        "counters": stability["counters"],
        **{k: state[k] for k in ("optimizer", "scheduler", "scaler")},
        "early_stopping": validation["early_stopping"],
        "best_valid": validation["best"],
        "plateau": validation["plateau"],
        "rng": state["rng"],
        "objective": {},
    }


@pytest.fixture(scope="module")
def reference(prepared, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("reference") / "run"
    _train(run, prepared)
    return run


def _killed_after_step_4(reference: Path, run: Path) -> Path:
    shutil.copytree(reference, run)
    for name in ("step_6", "step_8"):
        shutil.rmtree(run / "checkpoints" / name)
    return run / "checkpoints" / "step_4"


def test_a_format_1_checkpoint_resumes_like_the_uninterrupted_run(reference, tmp_path, capsys):
    checkpoint = _killed_after_step_4(reference, tmp_path / "run")
    state = torch.load(checkpoint / "trainer_state.pt", weights_only=True)
    assert state.pop("format") == 2
    _rewrite_state(checkpoint, _as_format_1(state))
    assert main(["train", "--resume", "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert _losses(tmp_path / "run") == _losses(reference)  # bit for bit


def test_a_checkpoint_of_a_later_format_is_refused_in_one_line(reference, tmp_path, capsys):
    checkpoint = _killed_after_step_4(reference, tmp_path / "run")
    state = torch.load(checkpoint / "trainer_state.pt", weights_only=True)
    _rewrite_state(checkpoint, {**state, "format": 3})
    assert main(["train", "--resume", "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{checkpoint / 'trainer_state.pt'}: trainer state format 3" in err


def test_stability_keeps_its_spike_window_across_a_resume():
    cfg = StabilityConfig(spike_factor=2.0, spike_window=5)
    before = Stability(cfg, lambda: None, lambda s: None)
    for step in range(5):
        before.watch(step, 1.0, 1.0, stepped=True)
    resumed, fresh = Stability(cfg, lambda: None, lambda s: None), Stability(cfg, lambda: None, lambda s: None)
    resumed.load_state_dict(before.state_dict())
    for stability in (before, resumed, fresh):
        stability.watch(5, 1.0, 3.0, stepped=True)
    assert before.counters == resumed.counters == {"skipped_steps": 0, "grad_spikes": 1, "recoveries": 0}
    assert fresh.counters["grad_spikes"] == 0  # without the window, the same norm is no spike


def _draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.standard_normal()), torch.rand(3).tolist()


def _seeded(seed: int) -> tuple[float, float, list[float]]:
    return (
        random.Random(seed).random(),
        float(np.random.RandomState(seed).standard_normal()),
        torch.rand(3, generator=torch.Generator().manual_seed(seed)).tolist(),
    )


def test_each_rank_draws_its_own_stream_and_builds_alike():
    rng = RandomState(7, DistEnv(rank=1, local_rank=0, world_size=2))
    with rng.alike():
        assert _draws() == _seeded(7)  # what every rank builds
    assert _draws() == _seeded(8)  # rank 1's own stream, from where seeding left it


def test_building_a_trainer_leaves_the_streams_where_seeding_left_them(prepared, tmp_path):
    # No train.peak_flops: building measures the machine too, and that must not move the streams.
    config = load_config(TINY, [f"data.dataset={prepared}", "train.seed=3", "model.mode=vae_gan"])
    build_trainer(config, PreparedDataset(prepared), tmp_path, DistEnv(), torch.device("cpu"), False, lambda s: None)
    assert _draws() == _seeded(3)
