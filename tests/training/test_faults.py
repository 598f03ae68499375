"""A full disk at every place aurl writes, and one writer per folder.

The full disk is simulated in the test process (conftest's full_disk); all of aurl's writers (torch.save and
safetensors included) write through Python file objects.
"""

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from aurl.cli import main
from aurl.training.checkpoint import resolve_checkpoint, verify_checkpoint
from tests.conftest import TINY, make_midi

SETS = [
    "train.max_steps=8",
    "train.save_interval=2",
    "train.eval_interval=4",
    "train.log_interval=1",
    "train.keep_last=2",
    "train.deterministic=true",
    "train.peak_flops=1e11",
    "train.precision=fp32",
    "model.dropout=0.1",
]
SAMPLES = ["train.sample_interval=2", "train.sample_count=1", "train.sample_tokens=16"]


def _train(run: Path, prepared: Path, *sets: str) -> int:
    args = ["train", "--config", str(TINY), "--run-dir", str(run), "--no-progress", "--set", f"data.dataset={prepared}"]
    for item in (*SETS, *sets):
        args += ["--set", item]
    return main(args)


def _losses(run: Path, split: str) -> dict[int, float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {m["step"]: m["loss"] for m in lines if m["split"] == split}


def _tensorboard_losses(run: Path) -> dict[int, float]:
    """train/loss as TensorBoard shows it: what a resume logged again replaces what the failed run logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    return {e.step: e.value for e in events.Scalars("train/loss")}


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files and folders of an interrupted write, and a lock nobody released."""
    return [p for p in folder.rglob(".*") if p.name.startswith((".step_", ".aurl.lock")) or ".tmp" in p.name]


@pytest.fixture(scope="module")
def references(prepared, tmp_path_factory) -> Callable[[tuple[str, ...]], Path]:
    """Uninterrupted runs, one per set of extra overrides."""
    runs: dict[tuple[str, ...], Path] = {}

    def run(sets: tuple[str, ...]) -> Path:
        if sets not in runs:
            runs[sets] = tmp_path_factory.mktemp("reference") / "run"
            assert _train(runs[sets], prepared, *sets) == 0
        return runs[sets]

    return run


def _weights_bytes(run: Path) -> int:
    return (resolve_checkpoint(run, "latest") / "model.safetensors").stat().st_size


SITES = {  # what a full disk hits → (its file or folder in the run, bytes left given the reference run,
    # the file whose write fails, overrides); "checkpoint state": the weights fit, torch.save's file does not
    "checkpoint weights": ("checkpoints", lambda ref: 2000, "model.safetensors", ()),
    "checkpoint state": ("checkpoints", lambda ref: _weights_bytes(ref) + 100, "trainer_state.pt", ()),
    "metrics": ("metrics.jsonl", lambda ref: 100, "metrics.jsonl", ()),
    "tensorboard": ("tb", lambda ref: 100, "events.out.tfevents", ()),
    "samples": ("samples", lambda ref: 100, "sample_0", tuple(SAMPLES)),
}


@pytest.mark.parametrize("site", SITES)
def test_a_full_disk_while_training_is_one_line_and_resume_continues_exactly(
    site, prepared, references, tmp_path, full_disk, capsys
):
    name, free, failing, sets = SITES[site]
    reference = references(sets)
    run = tmp_path / "run"
    first = run / "checkpoints" / "step_2"
    disk = full_disk(str(run / name), free(reference), when=first.is_dir)
    assert _train(run, prepared, *sets) == 2
    err = _error(capsys)
    assert f"writing {run / name}" in err and failing in Path(disk.failed).name, (err, disk.failed)
    assert "No space left on device; free space, lower train.keep_last or choose another --run-dir" in err
    assert _leftovers(run) == []
    verify_checkpoint(first, ("model.safetensors", "trainer_state.pt"))  # what was written before stays
    disk.undo()  # space freed
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress"]) == 0
    assert "resumed from" in capsys.readouterr().out
    for split in ("train", "valid"):
        assert _losses(run, split) == _losses(reference, split)  # bit for bit
    assert sorted(_losses(run, "train")) == list(range(1, 9))
    assert _leftovers(run) == []
    assert _tensorboard_losses(run) == pytest.approx(_losses(reference, "train"), rel=1e-6)  # float32 there


def test_a_resume_on_a_full_disk_is_one_line_and_touches_nothing(references, tmp_path, full_disk, capsys):
    run = tmp_path / "run"
    shutil.copytree(references(()), run)
    shutil.rmtree(run / "checkpoints" / "step_8")  # as if killed after step 6's checkpoint
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    full_disk(str(run), 0)
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress", "--set", "train.max_steps=10"]) == 2
    assert "No space left on device" in _error(capsys)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_full_disk_while_preparing_keeps_the_earlier_dataset(tmp_path, full_disk, capsys):
    source, out = tmp_path / "midi", tmp_path / "data"
    for i in range(4):
        make_midi(source / f"piece_{i}.mid", seed=i, bars=4)
    args = ["prepare", str(source), "--out", str(out), "--no-progress", "--workers", "1", "--config", str(TINY)]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    make_midi(source / "piece_new.mid", seed=9, bars=4)
    disk = full_disk(str(out), 100)
    assert main(args) == 2
    err = _error(capsys)
    assert f"writing {out / 'tokens.bin'}: No space left on device; free space or choose another --out" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    disk.undo()
    assert main(args) == 0
    assert json.loads((out / "manifest.json").read_text())["files"][-1]["name"] == "piece_new.mid"
    assert _leftovers(out) == []


def test_a_full_disk_while_generating_leaves_no_partial_file(references, tmp_path, full_disk, capsys):
    out = tmp_path / "samples"
    full_disk(str(out), 0)
    assert main(["generate", "--run", str(references(())), "--num", "1", "--max-tokens", "32", "--out", str(out)]) == 2
    err = _error(capsys)
    assert f"writing {out}" in err and ".mid: No space left on device; free space or choose another --out" in err
    assert not any(p.is_file() for p in out.rglob("*"))


def test_a_full_disk_while_rendering_audio_leaves_no_partial_wav(references, tmp_path, full_disk, capsys):
    out = tmp_path / "samples"
    full_disk(".wav", 1000)  # the MIDI file and the piano roll fit, the audio does not
    args = ["generate", "--run", str(references(())), "--num", "1", "--max-tokens", "32", "--out", str(out), "--wav"]
    assert main(args) == 2
    err = _error(capsys)
    assert f"writing {out / 'sample_0.wav'}: No space left on device; free space or choose another --out" in err
    assert sorted(p.name for p in out.iterdir()) == ["sample_0.mid", "sample_0.png"]


HOLDER = """
import sys, time
from pathlib import Path
from aurl.files import FolderLock
FolderLock(Path(sys.argv[1]), "--out").__enter__()
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("command", ["train", "prepare"])
def test_one_writer_per_folder_and_a_dead_holder_is_taken_over(command, prepared, midi_dir, tmp_path, capsys):
    folder = tmp_path / "folder"

    def run() -> int:
        if command == "train":
            return _train(folder, prepared)
        return main(["prepare", str(midi_dir), "--out", str(folder), "--no-progress", "--config", str(TINY)])

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run() == 2
        err = _error(capsys)
        assert f"{folder}: in use by pid {holder.pid} on {socket.gethostname()} since " in err
        assert err.endswith(f"wait for it to end or choose another {'--run-dir' if command == 'train' else '--out'}")
    finally:
        holder.kill()  # dies holding it, as a killed run does
        holder.wait()
    assert run() == 0
    assert f"note: {folder}: taking over from pid {holder.pid} on " in capsys.readouterr().out
    assert not (folder / ".aurl.lock").exists()  # released on exit
