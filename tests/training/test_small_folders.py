"""Small folders train: from three files on with the validation file prepare sets aside, with one or two
without evaluation (said once), `best` then naming the latest checkpoint."""

import json

import pytest

from aurl.config import load_config
from aurl.data.prepare import prepare
from aurl.training.checkpoint import resolve_checkpoint
from aurl.training.run import train
from tests.conftest import TINY, lopsided_folder

STEPS = ["train.max_steps=4", "train.eval_interval=2", "train.save_interval=2", "train.log_interval=2"]


def _prepare_and_train(tmp_path, train_files: int, test_files: int, sets: tuple[str, ...] = ()):
    """(what training logged, metrics.jsonl) of a run on a lopsided folder, prepared as `aurl prepare` does."""
    lopsided_folder(tmp_path / "midi", train_files, test_files)
    config = load_config(TINY, [f"data.dataset={tmp_path / 'data'}", "train.peak_flops=1e11", *STEPS, *sets])
    prepare(str(tmp_path / "midi"), tmp_path / "data", config, progress=False, log=lambda s: None)
    lines: list[str] = []
    train(config, tmp_path / "run", progress=False, log=lines.append)
    return lines, [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("train_files", "test_files"), [(3, 0), (4, 1), (10, 2)])
def test_small_folders_train_and_evaluate(tmp_path, train_files, test_files):
    lines, metrics = _prepare_and_train(tmp_path, train_files, test_files)
    assert [m["step"] for m in metrics if m["split"] == "valid"] == [2, 4]
    assert not any("no validation pieces" in line for line in lines)


def test_two_files_train_without_evaluation_and_say_so_once(tmp_path):
    stopping = ("train.early_stopping.enabled=true", "train.early_stopping.patience=1", "train.schedule=plateau")
    lines, metrics = _prepare_and_train(tmp_path, 2, 0, stopping)
    assert [line for line in lines if "no validation pieces" in line] == [
        "the dataset has no validation pieces (2 files): training without evaluation or early stopping, and "
        "`best` names the latest checkpoint"
    ]
    assert any(line.startswith("final training loss") for line in lines)
    assert [m["step"] for m in metrics if m["split"] == "train"] == [2, 4]
    assert not [m for m in metrics if m["split"] == "valid"]
    best = resolve_checkpoint(tmp_path / "run", "best")
    assert best == resolve_checkpoint(tmp_path / "run", "latest") and best.name == "step_4"
