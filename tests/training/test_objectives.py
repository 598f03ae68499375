import json

import pytest
import torch
import torch.nn.functional as F

from aurl.config import ModelConfig
from aurl.data.tokenize import build_tokenizer, token_type_weights
from aurl.errors import ConfigError
from aurl.models.balance import LossBalance
from aurl.modes import build_model
from aurl.training.objectives import LanguageModelObjective


def test_token_type_weights_follow_the_vocabulary(tiny_config):
    tokenizer = build_tokenizer(tiny_config.tokenizer)
    weights = token_type_weights(tokenizer, {"Pitch": 2.0, "Bar": 0.5})
    for token, i in tokenizer.vocab.items():
        kind = token.partition("_")[0]
        assert weights[i] == {"Pitch": 2.0, "Bar": 0.5}.get(kind, 1.0), token
    with pytest.raises(ConfigError, match="train.token_weights: Pitches not a token type"):
        token_type_weights(tokenizer, {"Pitches": 2.0})


def test_weighted_cross_entropy_is_the_weighted_mean_over_targets():
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=16, n_layers=1, n_heads=2, context=16), 6)
    ids = torch.randint(0, 6, (2, 8))
    targets = ids.roll(-1, 1)
    targets[0, -1] = -100  # padding is ignored
    weights = torch.tensor([1.0, 3.0, 1.0, 0.0, 2.0, 1.0])
    with torch.no_grad():
        out = LanguageModelObjective(model, weights)({"input_ids": ids, "targets": targets})
        ce = F.cross_entropy(model(ids).flatten(0, 1), targets.flatten(), reduction="none", ignore_index=-100)
    w = torch.where(targets.flatten() >= 0, weights[targets.flatten().clamp(min=0)], 0.0)
    assert float(out["loss"]) == pytest.approx(float((w * ce).sum() / w.sum()), rel=1e-5)
    assert float(out["ce"]) == pytest.approx(float(ce[targets.flatten() >= 0].mean()), rel=1e-5)


def test_uncertainty_weights_settle_where_kendalls_loss_is_minimal():
    # exp(-s) L + s / 2 is smallest at s = log(2 L): a larger loss gets a smaller weight.
    balance = LossBalance(("recon", "kl"))
    opt = torch.optim.Adam(balance.parameters(), lr=0.05)
    losses = {"recon": torch.tensor(3.0), "kl": torch.tensor(0.25)}
    for _ in range(600):
        terms, _ = balance(losses)
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
    _, weights = balance(losses)
    assert float(weights["weight_recon"]) == pytest.approx(1 / 6, rel=0.02)
    assert float(weights["weight_kl"]) == pytest.approx(2.0, rel=0.02)


def test_a_run_with_learned_loss_weights_and_token_weights_trains_and_generates(prepared, tmp_path):
    from aurl.config import load_config
    from aurl.generation.requests import generate
    from aurl.training.run import load_trained, train
    from tests.conftest import TINY

    sets = [f"data.dataset={prepared}", "model.loss_balance=uncertainty", "train.token_weights={Pitch: 2.0}"]
    train(load_config(TINY, [*sets, "train.max_steps=20"]), tmp_path, progress=False, log=lambda s: None)
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_log = [m for m in log if m["split"] == "train"]
    assert train_log[-1]["ce"] < train_log[0]["ce"]
    assert train_log[-1]["weight_recon"] != train_log[0]["weight_recon"]  # the weight is learned
    # the learned log-variances are model weights: saved, reloaded, ignored by generation
    _, _, model = load_trained(tmp_path, "latest")
    assert float(model.loss_balance.log_vars.detach()[0]) != 0.0
    assert generate(tmp_path, tmp_path / "out", "latest", log=lambda s: None, num=1, max_tokens=32)


def test_an_unknown_token_type_is_refused_before_the_run_directory_exists(prepared, tmp_path, capsys):
    from aurl.cli import main
    from tests.conftest import TINY

    run = tmp_path / "run"
    sets = ["--set", f"data.dataset={prepared}", "--set", "train.token_weights={Pich: 2.0}"]
    assert main(["train", "--config", str(TINY), "--run-dir", str(run), *sets]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.token_weights: Pich" in err and len(err.splitlines()) == 1
    assert not run.exists()
