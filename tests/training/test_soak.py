"""Slow end to end checks of faults: the kill soak (benchmarks/soak.py) in small, and a real full disk (a
tmpfs of 1 MB, mounted in a user namespace where the system allows one)."""

import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY


@pytest.mark.slow
def test_a_run_killed_again_and_again_resumes_to_the_same_losses(prepared):
    soak = [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--kills", "3", "--steps", "60"]
    result = subprocess.run([*soak, "--data", str(prepared)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = dict(re.match(r"(.+?)\s{2,}(.*)", line).groups() for line in result.stdout.splitlines())
    assert counts["kills"] == counts["resumes"] == "3", result.stdout
    assert int(counts["during a checkpoint write"]) >= 1, result.stdout
    assert counts["corrupt checkpoints refused"] == "0", result.stdout
    assert counts["resumed-equal"].startswith("yes"), result.stdout


NAMESPACE = ["unshare", "--user", "--map-root-user", "--mount"]


def _namespaces() -> bool:
    return shutil.which("unshare") is not None and subprocess.run([*NAMESPACE, "true"]).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _namespaces(), reason="no unprivileged user namespaces here to mount a small tmpfs in")
def test_a_real_full_disk_is_one_line_and_resume_after_freeing_space_continues_exactly(prepared, tmp_path):
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir(), out.mkdir()
    sets = ["train.max_steps=40", "train.save_interval=5", "train.keep_last=100", "train.log_interval=1"]
    sets += ["train.deterministic=true", "train.precision=fp32", "train.peak_flops=1e11", "model.dropout=0.1"]
    train = [sys.executable, "-m", "aurl", "train", "--no-progress", "--set", f"data.dataset={prepared}"]
    train += [x for s in sets for x in ("--set", s)]
    whole = tmp_path / "whole"
    subprocess.run([*train, "--config", str(TINY), "--run-dir", str(whole)], check=True, capture_output=True)

    # In the namespace: train until the 1 MB disk is full, resume on it still full, then with space freed.
    first = shlex.join([*train, "--config", str(TINY), "--run-dir", str(disk / "run")])
    resume = shlex.join([*train, "--resume", "--run-dir", str(disk / "run")])
    script = f"""
        mount -t tmpfs -o size=1m tmpfs {disk} || exit 99
        {first} > {out}/first.out 2> {out}/first.err; echo $? > {out}/first.rc
        ls -a {disk}/run/checkpoints > {out}/after_failure.ls
        {resume} > {out}/full.out 2> {out}/full.err; echo $? > {out}/full.rc
        mount -o remount,size=64m {disk}
        {resume} > {out}/freed.out 2> {out}/freed.err; echo $? > {out}/freed.rc
        cp {disk}/run/metrics.jsonl {out}/
    """
    subprocess.run([*NAMESPACE, "bash", "-c", script], check=True)
    read = {p.name: p.read_text() for p in out.iterdir()}
    for stage in ("first", "full"):
        assert read[f"{stage}.rc"] == "2\n", read
        assert re.fullmatch(
            rf"aurl train: error: writing {disk}/run/\S+: No space left on device; "
            r"free space, lower train.keep_last or choose another --run-dir\n",
            read[f"{stage}.err"],
        ), read[f"{stage}.err"]
    assert ".step_" not in read["after_failure.ls"] and "step_5" in read["after_failure.ls"]
    assert read["freed.rc"] == "0\n", read["freed.err"]
    assert _losses(read["metrics.jsonl"]) == _losses((whole / "metrics.jsonl").read_text())  # bit for bit


def _losses(text: str) -> dict[tuple[int, str], float]:
    lines = [json.loads(line) for line in text.splitlines()]
    return {(m["step"], m["split"]): m["loss"] for m in lines if m["split"] in ("train", "valid")}
