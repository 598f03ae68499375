"""The model sized for the budget: the choice is made, cached per machine, overridable, and a named size is kept."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from aurl.config import build_config
from aurl.training import sizing
from aurl.training.run import train
from aurl.training.sizing import BATCHES, CONTEXTS, LADDER, Law, Shape, settings, sized

TREE = {"data": {"seq_len": 64}, "train": {"batch_tokens": 512, "max_steps": 100000}}
CPU = torch.device("cpu")


def config(minutes: float | None = 3.0, **model):
    tree = {**TREE, "model": model, "train": {**TREE["train"], "max_minutes": minutes}}
    return build_config(tree)


def open_config(minutes: float = 3.0):
    """A budget that names neither the window nor the tokens a step: the sizing chooses them too."""
    return build_config({"train": {"max_steps": 100000, "max_minutes": minutes}})


def rates_of(cfg, rate) -> dict[str, float]:
    return {setting.name: rate(setting) for setting in settings(cfg)}


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
    law = Law(E=0.6, A=40.0, alpha=0.35, B=300.0, beta=0.4, noise=3000.0, C=-2.0, gamma=0.5)
    points = [
        (n, d, b, t, law.loss(n, d, b, t))
        for n in (4e5, 1.4e6, 3.2e6, 1e7)
        for d in (6e5, 1.8e6, 6e6)
        for b, t in ((4096, 512), (2048, 512), (8192, 512), (4096, 256), (4096, 128))
    ]
    fitted = Law.fit(points)
    for n, d, b, t, loss in points:
        assert fitted.loss(n, d, b, t) == pytest.approx(loss, rel=2e-3)


def test_the_law_weighs_the_window_by_its_sign_and_a_batch_against_the_noise_scale():
    law = Law(E=0.5, A=40.0, alpha=0.35, B=300.0, beta=0.4, noise=3000.0, C=2.0, gamma=0.5)
    assert law.loss(1e6, 1e6, 4096, 512) < law.loss(1e6, 1e6, 4096, 256)
    shorter = Law(E=0.5, A=40.0, alpha=0.35, B=300.0, beta=0.4, noise=3000.0, C=-2.0, gamma=0.5)
    assert shorter.loss(1e6, 1e6, 4096, 256) < shorter.loss(1e6, 1e6, 4096, 512)  # C's sign says which
    assert law.loss(1e6, 1e6, 2048, 512) < law.loss(1e6, 1e6, 8192, 512)  # the same tokens in more steps


def test_a_budget_without_a_size_gets_the_rung_the_law_predicts_best_and_says_why(measured, tmp_path):
    said: list[str] = []
    chosen = sized(config(), 300, CPU, "fp32", tmp_path / "sizing.json", said.append)
    rates = rates_of(config(), lambda setting: 2e8 / setting.shape.d_model**2)
    best = min(sizing.candidates(config(), rates, 300, 3.0), key=lambda c: c.loss).setting.shape
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


def test_an_open_budget_chooses_the_window_and_batch_too_and_a_named_one_is_kept(measured, tmp_path):
    said: list[str] = []
    chosen = sized(open_config(), 300, CPU, "fp32", tmp_path / "sizing.json", said.append)
    rates = rates_of(open_config(), lambda setting: 2e8 / setting.shape.d_model**2)
    best = min(sizing.candidates(open_config(), rates, 300, 3.0), key=lambda c: c.loss).setting
    assert (chosen.data.seq_len, chosen.train.batch_tokens) == (best.seq_len, best.batch_tokens)
    assert chosen.data.seq_len in CONTEXTS and chosen.train.batch_tokens in BATCHES
    assert chosen.model.context == 2 * chosen.data.seq_len  # generation slides at twice the trained window
    assert f"windows of {best.seq_len} tokens, {best.batch_tokens} tokens a step" in said[-1]
    assert len(measured) > len({setting.shape for setting in settings(open_config())})  # each window and batch

    named = build_config({"data": {"seq_len": 128}, "train": {"max_steps": 100000, "max_minutes": 3.0}})
    kept = sized(named, 300, CPU, "fp32", tmp_path / "sizing.json", lambda _: None)
    assert kept.data.seq_len == 128 and kept.train.batch_tokens in BATCHES
    assert kept.model.context == named.model.context  # a named window leaves the context as it was


def test_settings_that_cannot_win_are_not_timed_and_the_choice_is_the_same(tmp_path, monkeypatch):
    calls: list[str] = []

    def rate(config, shape: Shape, vocab_size, device, precision) -> float:
        calls.append(f"{shape.name} {config.data.seq_len} {config.train.batch_tokens}")
        return 4e9 / shape.d_model**3 * (1 - config.data.seq_len / 4096) * (1 - 256 / config.train.batch_tokens)

    monkeypatch.setattr(sizing, "step_throughput", rate)
    for minutes in (3.0, 60.0):
        calls.clear()
        chosen = sized(open_config(minutes), 300, CPU, "fp32", tmp_path / f"{minutes}.json", lambda _: None)
        timed = len(calls)
        every = {
            s.name: rate(s.applied(open_config(minutes)), s.shape, 300, CPU, "fp32")
            for s in settings(open_config(minutes))
        }
        best = min(sizing.candidates(open_config(minutes), every, 300, minutes), key=lambda c: c.loss).setting
        assert (chosen.model.d_model, chosen.data.seq_len, chosen.train.batch_tokens) == (
            best.shape.d_model,
            best.seq_len,
            best.batch_tokens,
        )
        assert timed < len(every)  # the largest rungs were never timed


def test_a_window_and_batch_that_break_the_config_are_never_candidates():
    tight = build_config({"train": {"max_minutes": 3.0, "min_batch": 8}})  # 8 windows of 512 need 4,096 tokens
    assert (512, 2048) not in {(s.seq_len, s.batch_tokens) for s in settings(tight)}
    assert len(settings(tight)) == 5 * len(LADDER)


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
    for choice in sizing.candidates(capped, rates_of(capped, lambda _: 1e9), 300, 60.0):
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
