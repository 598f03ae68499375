import json

import pytest

from aurl.errors import CheckpointError
from aurl.training.checkpoint import load_weights, resolve_checkpoint, save_checkpoint, tied_names
from aurl.training.run import load_trained, train
from aurl.training.trainer import lr_factor


def _metrics(run, split):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [m for m in lines if m["split"] == split]


def test_tiny_run_learns(trained_run):
    train_log = _metrics(trained_run, "train")
    assert train_log[-1]["loss"] < train_log[0]["loss"] * 0.8
    valid = _metrics(trained_run, "valid")
    assert valid[-1]["loss"] < valid[0]["loss"]
    assert all(k in train_log[-1] for k in ("lr", "grad_norm", "tokens_per_s"))


def test_run_directory_holds_what_generation_needs(trained_run):
    for name in ("config.yaml", "tokenizer.json", "metrics.jsonl"):
        assert (trained_run / name).is_file()
    assert any((trained_run / "tb").iterdir())
    ckpt = resolve_checkpoint(trained_run, "latest")
    assert ckpt.name == "step_30"
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "trainer_state.pt"}
    assert resolve_checkpoint(trained_run, "best").is_dir()
    config, tokenizer, model = load_trained(trained_run, "latest")
    assert model.vocab_size == len(tokenizer) and config.model.d_model == 32


def test_corrupt_checkpoint_is_refused(trained_run, tmp_path):
    config, _, model = load_trained(trained_run, "latest")
    weights = {k: v for k, v in model.state_dict().items() if k not in tied_names(model)}
    ckpt = save_checkpoint(tmp_path / "checkpoints", 1, weights, {}, {}, best=True)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(ckpt, model)


def test_checkpoint_from_another_model_is_refused(trained_run, tmp_path):
    from aurl.modes import build_model

    config, tokenizer, _ = load_trained(trained_run, "latest")
    bigger = build_model(config.model.model_copy(update={"d_model": 64}), len(tokenizer))
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_weights(resolve_checkpoint(trained_run, "latest"), bigger)


def test_existing_run_is_not_overwritten_without_asking(trained_run, prepared, tiny_config):
    config = tiny_config.model_copy(deep=True)
    config.data.dataset = str(prepared)
    before = (trained_run / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match="--overwrite"):
        train(config, trained_run, progress=False, log=lambda s: None)
    assert (trained_run / "metrics.jsonl").read_text() == before


def test_lr_schedule_warms_up_then_decays_to_min(tiny_config):
    cfg = tiny_config.train.model_copy(update={"lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "max_steps": 110})
    f = lr_factor(cfg)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_training_is_reproducible_for_a_seed(prepared, tiny_config, tmp_path):
    config = tiny_config.model_copy(deep=True)
    config.data.dataset = str(prepared)
    config.train.max_steps = 6
    config.train.log_interval = 1
    runs = []
    for name in ("a", "b"):
        train(config, tmp_path / name, progress=False, log=lambda s: None)
        runs.append([m["loss"] for m in _metrics(tmp_path / name, "train")])
    assert runs[0] == runs[1]
