import json
import shutil
import subprocess
import sys

import pytest
import symusic

from aurl.cli import main
from tests.conftest import TINY


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_prepare_train_generate_from_the_command_line(midi_dir, tmp_path, capsys):
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "samples"
    common = ["--config", str(TINY), "--set", "data.valid_fraction=0.2"]
    assert main(["prepare", str(midi_dir), "--out", str(data), "--workers", "2", "--no-progress", *common]) == 0
    assert "tokenized now" in capsys.readouterr().out
    assert main(["train", *common, "--set", f"data.dataset={data}", "--run-dir", str(run), "--no-progress"]) == 0
    assert "final validation loss" in capsys.readouterr().out
    assert (
        main(
            [
                "generate",
                "--run",
                str(run),
                "--num",
                "3",
                "--max-tokens",
                "100",
                "--seed",
                "1",
                "--top-k",
                "20",
                "--top-p",
                "0.9",
                "--temperature",
                "0.9",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    mids = sorted(out.glob("*.mid"))
    assert len(mids) == 3 and len(list(out.glob("*.png"))) == 3
    for path in mids:
        symusic.Score(str(path))  # parses
    # The same seed gives the same music.
    again = tmp_path / "again"
    assert (
        main(
            [
                "generate",
                "--run",
                str(run),
                "--num",
                "3",
                "--max-tokens",
                "100",
                "--seed",
                "1",
                "--top-k",
                "20",
                "--top-p",
                "0.9",
                "--temperature",
                "0.9",
                "--out",
                str(again),
            ]
        )
        == 0
    )
    assert [p.read_bytes() for p in mids] == [p.read_bytes() for p in sorted(again.glob("*.mid"))]


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, trained_run, capsys):
    assert main(["prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere" in _error_line(capsys)
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in _error_line(capsys)
    assert main(["train", "--config", str(TINY), "--set", "train.precision=fp8"]) == 2
    assert "train.precision" in _error_line(capsys)
    assert main(["train", "--config", str(TINY)]) == 2
    assert "data.dataset" in _error_line(capsys)
    assert main(["generate", "--run", str(tmp_path)]) == 2
    assert "not a run directory" in _error_line(capsys)
    assert main(["generate", "--run", str(trained_run), "--temperature", "0"]) == 2
    assert "temperature" in _error_line(capsys)
    assert main(["generate", "--run", str(trained_run), "--checkpoint", "step_999"]) == 2
    assert "step_999" in _error_line(capsys)


def test_prepare_with_only_bad_files_fails_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.mid").write_text("not midi")
    assert main(["prepare", str(src), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "none of the 1 files is usable" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_generated_midi_from_a_corrupt_checkpoint_is_refused(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    weights = run / "checkpoints" / "step_30" / "model.safetensors"
    weights.write_bytes(b"\0" * 64)
    assert main(["generate", "--run", str(run), "--checkpoint", "step_30"]) == 2
    assert "corrupt" in _error_line(capsys)


@pytest.mark.parametrize("command", [[], ["prepare"], ["train"], ["generate"]])
def test_help_explains_every_command(command):
    result = subprocess.run([sys.executable, "-m", "aurl", *command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: aurl" in result.stdout


def test_train_flags_that_contradict_are_refused(tmp_path, capsys):
    assert main(["train", "--resume", "--overwrite", "--run-dir", str(tmp_path)]) == 2
    assert "contradict" in _error_line(capsys)
    assert main(["train", "--resume"]) == 2
    assert "--run-dir" in _error_line(capsys)
    assert main(["train", "--config", str(TINY), "--profile-steps", "5:2"]) == 2
    assert "--profile-steps" in _error_line(capsys)


def test_a_bpe_vocabulary_from_prepare_to_generate_and_evaluate(midi_dir, tmp_path, capsys):
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "samples"
    common = ["--config", str(TINY), "--set", "data.valid_fraction=0.2", "--set", "tokenizer.bpe_vocab_size=600"]
    assert main(["prepare", str(midi_dir), "--out", str(data), "--no-progress", *common]) == 0
    manifest = json.loads((data / "manifest.json").read_text())
    assert 486 < manifest["vocab_size"] <= 600  # 486 base tokens, then merges learned from the data
    train = ["train", *common, "--set", f"data.dataset={data}", "--set", "train.max_steps=10"]
    assert main([*train, "--run-dir", str(run), "--no-progress"]) == 0
    assert "augment: off" in capsys.readouterr().out
    args = ["generate", "--run", str(run), "--out", str(out), "--num", "3", "--max-tokens", "150", "--max-bars", "4"]
    assert main(args) == 0
    assert main([*args, "--primer", str(midi_dir / "piece_3.mid"), "--primer-bars", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(" 0 skipped tokens") == 6, printed
    for i in range(3):
        assert len(symusic.Score(str(out / f"sample_{i}.mid")).tracks[0].notes) > 0
    assert main(["evaluate", str(out), "--reference", str(midi_dir), "--run", str(run), "--data", str(data)]) == 0
    assert "bits/note" in capsys.readouterr().out
    # a dataset trains only with the BPE setting it was prepared with
    other = ["--set", "tokenizer.bpe_vocab_size=700", "--run-dir", str(tmp_path / "other"), "--no-progress"]
    assert main([*train, *other]) == 2
    assert "prepared with other tokenizer settings" in _error_line(capsys)
