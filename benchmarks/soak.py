"""Kill soak: `aurl train` killed with SIGKILL at random moments, every other one in the middle of a
checkpoint write, and continued with `aurl train --resume` after each kill. The per-step train and
validation losses of the killed run must equal an uninterrupted run's bit for bit (on the CPU), and no
checkpoint may be refused as corrupt: an interrupted write leaves only a temporary folder, which the
resume removes.

Moments: once a (resumed) process has logged a step, a seeded RNG picks a time within a share of the
uninterrupted run's measured training time; for a checkpoint kill the soak instead watches checkpoints/
and kills as soon as a temporary .step_N-* folder appears. Whether a write was under way is read from
the folder after each kill, whatever the moment.

Run: .venv/bin/python benchmarks/soak.py [--kills 10] [--steps 300] [--seed 0] [--data PREPARED]
(without --data, builtin:bach-chorales is prepared with configs/tiny.yaml's tokenizer first)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
AURL = [sys.executable, "-m", "aurl"]


def _last_step(run: Path) -> int:
    """The newest step in metrics.jsonl (0 before any): a process past it is training, not starting."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines(True)
    except FileNotFoundError:
        return 0
    return max((json.loads(line)["step"] for line in lines if line.endswith("\n")), default=0)


def _writing(run: Path) -> bool:
    """A checkpoint write under way: its temporary folder is there."""
    folder = run / "checkpoints"
    return folder.is_dir() and any(e.name.startswith(".step_") and e.is_dir() for e in os.scandir(folder))


def _losses(run: Path) -> dict[tuple[int, str], float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {(m["step"], m["split"]): m["loss"] for m in lines if m["split"] in ("train", "valid")}


def _start(run: Path, log: Path, resume: bool, sets: list[str]) -> subprocess.Popen:
    cmd = [*AURL, "train", "--run-dir", str(run), "--no-progress"]
    cmd += ["--resume"] if resume else ["--config", str(TINY), *(arg for s in sets for arg in ("--set", s))]
    with open(log, "a") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen, ready) -> bool:
    """Until ready(); False when the process ended first."""
    while not ready():
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return True


def soak(kills: int, steps: int, seed: int, data: Path, work: Path) -> dict[str, object]:
    sets = [
        f"data.dataset={data}",
        f"train.max_steps={steps}",
        "train.save_interval=10",
        f"train.eval_interval={max(1, steps // 6)}",
        "train.log_interval=1",
        "train.keep_last=3",
        "train.deterministic=true",
        "train.precision=fp32",
        "train.peak_flops=1e11",
        "model.dropout=0.1",
    ]
    whole = work / "whole"
    proc = _start(whole, work / "whole.log", False, sets)
    _wait(proc, lambda: _last_step(whole) > 0)
    begun = time.perf_counter()
    if proc.wait() != 0:
        raise SystemExit(f"the uninterrupted run failed; see {work / 'whole.log'}")
    share = (time.perf_counter() - begun) / kills  # training seconds per kill, were the kills spread evenly

    rng = random.Random(seed)
    run, log = work / "killed", work / "killed.log"
    counts = {"kills": 0, "during a checkpoint write": 0, "resumes": 0}
    proc = _start(run, log, False, sets)
    for i in range(kills):
        # Training, not starting: a resumed process says so once it has cleaned up and loaded its checkpoint.
        if not _wait(
            proc, lambda n=counts["resumes"]: _last_step(run) > 0 and log.read_text().count("resumed from") == n
        ):
            break
        if i % 2:  # at the next checkpoint write
            while not _writing(run) and proc.poll() is None:
                time.sleep(0.0005)
        else:
            time.sleep(rng.uniform(0.2, 1.0) * share)
        if proc.poll() is not None:  # finished before the moment came
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        counts["kills"] += 1
        counts["during a checkpoint write"] += _writing(run)
        proc = _start(run, log, True, sets)
        counts["resumes"] += 1
    if proc.wait() != 0:
        raise SystemExit(f"the last resume failed; see {log}")
    text = log.read_text()
    counts["stale locks taken over"] = text.count("taking over from")
    counts["half-written checkpoints removed"] = text.count("left half-written by an interrupted run")
    counts["corrupt checkpoints refused"] = text.count("warning: skipping checkpoint")
    equal = _losses(run) == _losses(whole)
    counts["resumed-equal"] = f"{'yes' if equal else 'NO'} ({steps} steps, train and valid losses bit for bit)"
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300, help="train.max_steps of both runs")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--data", type=Path, help="a prepared dataset with configs/tiny.yaml's tokenizer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aurl-soak-") as tmp:
        work = Path(tmp)
        data = args.data
        if data is None:
            data = work / "data"
            prepare = [*AURL, "prepare", "builtin:bach-chorales", "--out", str(data), "--config", str(TINY)]
            subprocess.run([*prepare, "--no-progress"], check=True, capture_output=True)
        start = time.perf_counter()
        counts = soak(args.kills, args.steps, args.seed, data, work)
        counts["seconds"] = f"{time.perf_counter() - start:.0f}"
    width = max(map(len, counts))
    for name, value in counts.items():
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
