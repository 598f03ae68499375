"""The model sized for the budget: the choice is made, cached per machine, overridable, and a named size is kept."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from aurl.config import build_config
from aurl.training import sizing
from aurl.training.run import train
from aurl.training.sizing import LADDER, Law, Shape, sized

TREE = {"data": {"seq_len": 64}, "train": {"batch_tokens": 512, "max_steps": 100000}}
CPU = torch.device("cpu")


def config(minutes: float | None = 3.0, **model):
    tree = {**TREE, "model": model, "train": {**TREE["train"], "max_minutes": minutes}}
    return build_config(tree)


@pytest.fixture
def measured(monkeypatch):
    """Rates without timing anything: tokens per second falling with the rung's width, each call counted."""
    calls: list[str] = []

    def rate(config, shape: Shape, vocab_size, device, precision) -> float:
        calls.append(shape.name)
        return 2e8 / shape.d_model**2

    monkeypatch.setattr(sizing, "step_throughput", rate)
    return calls


def test_the_law_fit_finds_the_constants_it_was_drawn_from():
    law = Law(E=0.6, A=40.0, alpha=0.35, B=300.0, beta=0.4)
    points = [(n, d, law.loss(n, d)) for n in (4e5, 1.4e6, 3.2e6, 1e7) for d in (6e5, 1.8e6, 6e6)]
    fitted = Law.fit(points)
    for n, d, loss in points:
        assert fitted.loss(n, d) == pytest.approx(loss, rel=1e-3)
    assert fitted.alpha == pytest.approx(0.35, abs=0.02) and fitted.beta == pytest.approx(0.4, abs=0.02)


def test_a_budget_without_a_size_gets_the_rung_the_law_predicts_best_and_says_why(measured, tmp_path):
    said: list[str] = []
    chosen = sized(config(), 300, CPU, "fp32", tmp_path / "sizing.json", said.append)
    options = sizing.candidates(config(), {name: 2e8 / int(name.split("x")[0]) ** 2 for name in measured}, 300, 3.0)
    best = min(options, key=lambda c: c.loss).shape
    assert (chosen.model.d_model, chosen.model.n_layers, chosen.model.n_heads) == (
        best.d_model,
        best.n_layers,
        best.n_heads,
    )
    assert chosen.train.lr == pytest.approx(best.lr)
    assert any(line.startswith(f"sizing: model {best.name}") for line in said)


def test_the_measurements_are_cached_per_machine(measured, tmp_path):
    cache = tmp_path / "sizing.json"
    first = sized(config(), 300, CPU, "fp32", cache, lambda _: None)
    count = len(measured)
    assert count and cache.is_file()
    again = sized(config(), 300, CPU, "fp32", cache, lambda _: None)
    assert len(measured) == count  # nothing measured twice
    assert again.model == first.model
    sized(config(), 300, CPU, "bf16", cache, lambda _: None)  # another precision is another machine entry
    assert len(measured) > count


def test_a_mangled_cache_is_measured_again_and_mended(measured, tmp_path):
    cache = tmp_path / "sizing.json"
    cache.write_text("{not json")
    sized(config(), 300, CPU, "fp32", cache, lambda _: None)
    assert measured and isinstance(yaml.safe_load(cache.read_text()), dict)


def test_a_cache_that_cannot_be_written_does_not_stop_the_run(measured, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    said: list[str] = []
    chosen = sized(config(), 300, CPU, "fp32", blocked / "sizing.json", said.append)
    assert chosen.model.d_model in {shape.d_model for shape in LADDER}
    assert any("could not keep the measurements" in line for line in said)


def test_a_named_size_no_budget_or_another_mode_keeps_the_config(measured, tmp_path):
    for kept in (config(d_model=64, n_heads=2), config(None), config(mode="vae")):
        assert sized(kept, 300, CPU, "fp32", tmp_path / "sizing.json", lambda _: None) is kept
    assert not measured


def test_steps_that_end_the_run_first_cap_the_tokens(measured, tmp_path):
    capped = config()
    capped = capped.model_copy(update={"train": capped.train.model_copy(update={"max_steps": 200})})
    rates = {shape.name: 1e9 for shape in LADDER}
    for choice in sizing.candidates(capped, rates, 300, 60.0):
        assert choice.tokens == 200 * capped.train.batch_tokens


def test_a_rung_that_cannot_take_enough_steps_is_not_measured_further(tmp_path, monkeypatch):
    calls: list[str] = []

    def slow(config, shape, vocab_size, device, precision) -> float:
        calls.append(shape.name)
        return 1.0  # a token a second: no rung takes 100 steps in minutes

    monkeypatch.setattr(sizing, "step_throughput", slow)
    said: list[str] = []
    chosen = sized(config(0.5), 300, CPU, "fp32", tmp_path / "sizing.json", said.append)
    assert calls == [LADDER[0].name]
    assert chosen.model.d_model == LADDER[0].d_model and "smallest" in said[-1]


def test_a_training_step_is_measured_on_this_machine():
    rate = sizing.step_throughput(config(), LADDER[0], 300, CPU, "fp32")
    assert math.isfinite(rate) and rate > 0


def test_a_timed_run_without_a_size_trains_and_keeps_the_chosen_rung(measured, prepared, tiny_config, tmp_path):
    tree = tiny_config.model_dump()
    del tree["model"]  # no size named: the budget chooses
    tree["data"]["dataset"] = str(prepared)
    tree["train"].update(max_minutes=0.2, max_steps=100, log_interval=50, eval_interval=100, save_interval=100)
    said: list[str] = []
    train(build_config(tree), tmp_path / "run", progress=False, log=said.append)
    choice = next(line for line in said if line.startswith("sizing: model "))
    kept = build_config(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()))
    assert choice.startswith(f"sizing: model {kept.model.d_model}x{kept.model.n_layers} ")
    assert sized(kept, 300, CPU, "fp32", tmp_path / "other.json", said.append) is kept  # the run names its size


def test_fine_tuning_without_a_size_takes_the_size_of_the_run_it_starts_from(
    trained_run, prepared, tiny_config, tmp_path
):
    tree = tiny_config.model_dump()
    del tree["model"]  # the default size (256 wide) would not take the tiny run's weights
    tree["data"]["dataset"] = str(prepared)
    tree["train"].update(init_from=str(trained_run), max_steps=2, eval_interval=2, save_interval=2)
    train(build_config(tree), tmp_path / "tuned", progress=False, log=lambda _: None)
    kept = build_config(yaml.safe_load((tmp_path / "tuned" / "config.yaml").read_text()))
    assert (kept.model.d_model, kept.model.n_layers, kept.model.n_heads) == (
        tiny_config.model.d_model,
        tiny_config.model.n_layers,
        tiny_config.model.n_heads,
    )


def test_the_command_line_says_the_choice_and_the_run_keeps_it(measured, prepared, tiny_config, tmp_path, capsys):
    from aurl.cli import main

    tree = tiny_config.model_dump()
    del tree["model"]
    (tmp_path / "timed.yaml").write_text(yaml.safe_dump(tree))
    sets = [f"data.dataset={prepared}", "train.max_minutes=0.2", "train.max_steps=100", "train.eval_interval=100"]
    args = ["train", "--config", str(tmp_path / "timed.yaml"), "--run-dir", str(tmp_path / "run"), "--no-progress"]
    assert main([*args, *(f"--set={item}" for item in sets)]) == 0
    said = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("sizing: model "))
    kept = build_config(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())).model
    assert said.startswith(f"sizing: model {kept.d_model}x{kept.n_layers} ")
