"""Fine-tuning (train.init_from, train.freeze), wall-time budgets and the automatic precision."""

import hashlib
import json
import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from aurl.cli import main
from aurl.config import load_config
from aurl.data.prepare import prepare
from aurl.errors import CheckpointError, ConfigError
from aurl.training import trainer as trainer_module
from aurl.training.run import parse_init_from, resolve_checkpoint, train
from aurl.training.trainer import lr_factor, pick_precision
from tests.conftest import TINY, _with_splits
from tests.training.test_resume_distributed import TORCHRUN, _train_cmd


def _metrics(run, split):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [m for m in lines if m["split"] == split]


def _fingerprint(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def _config(tiny_config, prepared, **train):
    config = _with_splits(tiny_config).model_copy(deep=True)
    config.data.dataset = str(prepared)
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def test_init_from_starts_at_the_source_weights_and_leaves_the_source_alone(
    trained_run, prepared, tiny_config, tmp_path
):
    before = _fingerprint(trained_run)
    config = _config(tiny_config, prepared, init_from=f"{trained_run}:latest", max_steps=5, eval_interval=5)
    train(config, tmp_path / "tuned", progress=False, log=lambda s: None)
    start = _metrics(tmp_path / "tuned", "valid")[0]
    # step 0 is the source's last weights on the same validation batches: the same loss
    assert start["step"] == 0
    assert start["loss"] == pytest.approx(_metrics(trained_run, "valid")[-1]["loss"], rel=1e-6)
    # a new run: a new schedule from step 0 (warming up again), five steps, its own checkpoints
    first = _metrics(tmp_path / "tuned", "train")[0]
    assert first["step"] == 5 and resolve_checkpoint(tmp_path / "tuned", "latest").name == "step_5"
    assert _fingerprint(trained_run) == before


def test_freeze_keeps_the_embedding_and_first_blocks(trained_run, prepared, tiny_config, tmp_path):
    config = _config(tiny_config, prepared, init_from=str(trained_run), max_steps=4, eval_interval=4)
    config.train.freeze.embeddings = True
    config.train.freeze.blocks = 1
    train(config, tmp_path / "frozen", progress=False, log=lambda s: None)
    source = load_file(resolve_checkpoint(trained_run, "best") / "model.safetensors")
    tuned = load_file(resolve_checkpoint(tmp_path / "frozen", "latest") / "model.safetensors")
    for name, tensor in tuned.items():
        kept = name.startswith(("embed.", "blocks.0."))
        assert torch.equal(tensor, source[name]) == kept, name


def test_init_from_refuses_another_tokenizer_before_writing(trained_run, midi_dir, tiny_config, tmp_path):
    other = tmp_path / "velocities"
    prepare(str(midi_dir), other, load_config(TINY, ["tokenizer.use_velocities=true"]), progress=False)
    config = load_config(TINY, ["tokenizer.use_velocities=true", f"data.dataset={other}"])
    config.train.init_from = str(trained_run)
    with pytest.raises(ConfigError, match=r"another tokenizer.*tokenizer\.use_velocities False there, True here"):
        train(config, tmp_path / "run", progress=False, log=lambda s: None)
    assert not (tmp_path / "run").exists()


def test_init_from_refuses_another_model(trained_run, prepared, tiny_config, tmp_path):
    config = _config(tiny_config, prepared, init_from=str(trained_run))
    config.model.d_model = 64
    with pytest.raises(CheckpointError, match=r"do not fit this model \(model\.d_model 32 there, 64 here\)"):
        train(config, tmp_path / "run", progress=False, log=lambda s: None)


def test_init_from_names_a_run_and_a_checkpoint(tmp_path):
    assert parse_init_from("runs/base") == (tmp_path.__class__("runs/base"), "best")
    assert parse_init_from("runs/base:step_200")[1] == "step_200"
    assert parse_init_from("C:/runs/base:latest")[0].as_posix() == "C:/runs/base"


def test_cli_init_from_errors_are_one_line(prepared, tmp_path, capsys):
    args = ["train", "--config", str(TINY), "--set", f"data.dataset={prepared}", "--run-dir", str(tmp_path / "r")]
    assert main([*args, "--init-from", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a run directory" in err
    assert main(["train", "--run-dir", str(tmp_path), "--resume", "--init-from", str(tmp_path)]) == 2
    assert "choose one" in capsys.readouterr().err


def test_schedule_follows_the_time_budget(tiny_config):
    cfg = tiny_config.train.model_copy(update={"lr": 1.0, "min_lr": 0.1, "warmup_steps": 0, "max_steps": 1000})
    f = lr_factor(cfg)
    assert f(10, 0.5) == pytest.approx(0.55)  # half the minutes spent: half-way down the cosine
    assert f(10, 1.0) == pytest.approx(0.1)
    assert f(500, 0.1) == pytest.approx(0.55)  # the steps are further along: they lead


def test_max_minutes_stops_training_with_the_schedule_at_its_end(prepared, tiny_config, tmp_path):
    config = _config(tiny_config, prepared, max_minutes=0.1, max_steps=100_000, warmup_steps=2, log_interval=1)
    train(config, tmp_path / "timed", progress=False, log=lambda s: None)
    log = _metrics(tmp_path / "timed", "train")
    assert 2 < log[-1]["step"] < 100_000
    lrs = [m["lr"] for m in log[2:]]
    assert lrs == sorted(lrs, reverse=True)  # decaying with the minutes, not with the 100,000 steps
    assert lrs[-1] < 0.1 * config.train.lr  # the last step saw most of the budget spent (cosine past ~80%)
    state = torch.load(resolve_checkpoint(tmp_path / "timed", "latest") / "trainer_state.pt", weights_only=True)
    assert 6.0 <= state["seconds"] < 20.0


@pytest.mark.parametrize(("bf16_flops", "expected"), [(8e11, "bf16"), (1e10, "fp32")])
def test_precision_auto_picks_bf16_only_where_it_is_faster(monkeypatch, bf16_flops, expected):
    monkeypatch.setattr(
        trainer_module,
        "measure_peak_flops",
        lambda device, dtype, size: bf16_flops if dtype == torch.bfloat16 else 2e11,
    )
    precision, why = pick_precision("auto", torch.device("cpu"))
    assert precision == expected and "as fast as fp32" in why
    assert pick_precision("fp32", torch.device("cpu"))[0] == "fp32"


def test_precision_auto_trains_and_says_what_it_chose(prepared, tiny_config, tmp_path):
    said = []
    config = _config(tiny_config, prepared, precision="auto", max_steps=2, eval_interval=2)
    train(config, tmp_path / "auto", progress=False, log=said.append)
    assert any(line.startswith("train.precision auto: ") for line in said)


@pytest.mark.parametrize("mode", ["vae", "vae_gan"])
def test_init_from_loads_the_weights_of_every_mode(prepared, tmp_path, mode):
    sets = [f"data.dataset={prepared}", f"model.mode={mode}", "model.latent_dim=8", "train.peak_flops=1e11"]
    train(load_config(TINY, [*sets, "train.max_steps=4"]), tmp_path / "source", progress=False, log=lambda s: None)
    # a step with a vanishing LR: the tuned weights are the source's, where a fresh model's would be random
    still = ["train.max_steps=1", "train.lr=1e-12", "train.min_lr=0", "train.warmup_steps=0"]
    tuned = load_config(TINY, [*sets, *still, f"train.init_from={tmp_path / 'source'}:latest"])
    train(tuned, tmp_path / "tuned", progress=False, log=lambda s: None)
    source = load_file(resolve_checkpoint(tmp_path / "source", "latest") / "model.safetensors")
    after = load_file(resolve_checkpoint(tmp_path / "tuned", "latest") / "model.safetensors")
    assert source.keys() == after.keys()
    for name, tensor in after.items():
        assert torch.allclose(tensor, source[name], atol=1e-6), name


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun is not installed beside this python")
def test_init_from_and_a_time_budget_under_torchrun(trained_run, prepared, tmp_path):
    # a time budget too: the ranks must agree on the step it runs out at, or they would wait on each other
    cmd = _train_cmd(prepared, tmp_path / "ddp", "train.max_minutes=0.1", "train.max_steps=100000")
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", *cmd[2:], "--init-from", f"{trained_run}:latest"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # every rank evaluates the same validation batches (see train.eval_batches): the source's own loss
    start = _metrics(tmp_path / "ddp", "valid")[0]
    assert start["step"] == 0
    assert start["loss"] == pytest.approx(_metrics(trained_run, "valid")[-1]["loss"], rel=1e-6)
    assert 1 < _metrics(tmp_path / "ddp", "valid")[-1]["step"] < 100_000
