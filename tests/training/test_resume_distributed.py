"""End to end through the command line: kill-and-resume equality, and torchrun DDP equality."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import TINY


def _train_cmd(prepared, run, *sets):
    cmd = [sys.executable, "-m", "aurl", "train", "--config", str(TINY), "--run-dir", str(run), "--no-progress"]
    for item in (f"data.dataset={prepared}", "train.log_interval=1", "train.peak_flops=1e11", *sets):
        cmd += ["--set", item]
    return cmd


def _losses(run, split="train"):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {m["step"]: m["loss"] for m in lines if m["split"] == split}


def test_killed_and_resumed_run_equals_an_uninterrupted_one(prepared, tmp_path):
    sets = [
        "train.max_steps=300",
        "train.save_interval=50",
        "train.eval_interval=100",
        "train.deterministic=true",
        "model.dropout=0.1",
        "train.keep_last=10",
    ]
    subprocess.run(_train_cmd(prepared, tmp_path / "whole", *sets), check=True, capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(prepared, run, *sets), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "step_100").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "checkpoints" / "step_300").exists(), "the run finished before it could be killed"
    resumed = subprocess.run(
        [sys.executable, "-m", "aurl", "train", "--resume", "--run-dir", str(run), "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    whole, killed = _losses(tmp_path / "whole"), _losses(run)
    assert sorted(killed) == list(range(1, 301))
    assert killed == whole  # bit for bit
    assert _losses(run, "valid") == _losses(tmp_path / "whole", "valid")


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    from aurl.cli import main

    assert main(["train", "--resume", "--run-dir", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err


TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun is not installed beside this python")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_process_with_the_same_global_batch(prepared, tmp_path, strategy):
    common = ["train.max_steps=8", "train.eval_interval=4", "train.min_batch=1", "train.eval_batches=1000"]
    single = _train_cmd(prepared, tmp_path / "single", *common, "train.batch_tokens=256", "train.max_batch=4")
    subprocess.run(single, check=True, capture_output=True)
    ddp = _train_cmd(
        prepared,
        tmp_path / "ddp",
        *common,
        "train.batch_tokens=64",
        "train.max_batch=1",
        "train.grad_accum=2",
        f"train.strategy={strategy}",
    )
    ddp = [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", *ddp[2:]]
    result = subprocess.run(ddp, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    one, two = _losses(tmp_path / "single"), _losses(tmp_path / "ddp")
    assert sorted(one) == sorted(two) == list(range(1, 9))
    assert all(abs(one[s] - two[s]) < 1e-5 for s in one), (one, two)
    assert _losses(tmp_path / "ddp", "valid") == pytest.approx(_losses(tmp_path / "single", "valid"), abs=1e-5)
