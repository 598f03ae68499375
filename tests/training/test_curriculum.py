import pytest
import torch

from aurl.config import CurriculumConfig
from aurl.training.curriculum import batch_plan, curriculum_length, largest_fitting_batch


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # start 128, end 1024 over 100 steps, multiples of 64
        ("linear", {0: 128, 25: 320, 50: 576, 75: 768, 99: 960, 100: 1024, 500: 1024}),
        ("exponential", {0: 128, 25: 192, 50: 320, 75: 576, 100: 1024}),
        ("cosine", {0: 128, 25: 256, 50: 576, 75: 832, 100: 1024}),
    ],
)
def test_sequence_length_schedules(schedule, expected):
    cfg = CurriculumConfig(enabled=True, start_len=128, end_len=1024, steps=100, schedule=schedule)
    assert {step: curriculum_length(step, cfg, 2048) for step in expected} == expected


def test_disabled_curriculum_uses_the_data_length():
    assert curriculum_length(0, CurriculumConfig(), 512) == 512


def test_tokens_per_step_stay_constant_as_length_grows():
    cfg = CurriculumConfig(enabled=True, start_len=128, end_len=1024, steps=10)
    plan = batch_plan(cfg, 1024, batch_tokens=8192, min_batch=1, max_batch=1000, grad_accum=2)
    for micro in range(0, 30):
        length, batch = plan(micro)
        assert 8192 - length < length * batch <= 8192  # as many windows as the budget holds
    assert plan(0) == plan(1) == (128, 64)  # the two micro-batches of step 0
    assert plan(20) == (1024, 8)


def test_batch_probe_backs_off_on_out_of_memory():
    tried = []

    def try_batch(batch):
        tried.append(batch)
        if batch > 12:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return batch <= 10  # fits, but over the memory fraction above 10

    assert largest_fitting_batch(try_batch, 64, 1) == 8
    assert tried == [64, 32, 16, 8]
    assert largest_fitting_batch(lambda b: False, 64, 4) == 4


class SimulatedMemory:
    """Stands in for CUDA's counters: 1 GB in all, 64 MB per window the last forward saw; a forward of
    more than 12 windows runs out of memory (raised by the model's forward hook below)."""

    def __init__(self):
        self.windows = 0

    def total(self) -> int:
        return 2**30

    def reset(self) -> None:
        self.windows = 0

    def peak(self) -> int:
        return self.windows * 2**26


@pytest.mark.parametrize("mode", ["transformer", "vae", "vae_gan"])
def test_batch_probe_runs_each_mode_and_backs_off_on_out_of_memory(mode, prepared, tiny_config):
    from aurl.config import load_config
    from aurl.data.dataset import PreparedDataset
    from aurl.data.tokenize import bar_token_ids
    from aurl.modes import MODES, build_model
    from aurl.training.run import probe_micro_batch
    from tests.conftest import TINY

    config = load_config(TINY, [f"model.mode={mode}", "model.latent_dim=8", "train.max_batch=64"])
    data = PreparedDataset(prepared)
    model = build_model(config.model, data.tables.vocab_size, bar_token_ids(data.tokenizer))
    train_set, _ = MODES[mode].datasets(config, data, None)
    memory, seen = SimulatedMemory(), []

    def forward_hook(module, args, output):
        windows = args[0].shape[0]
        seen.append(windows)
        if windows > 12:
            raise torch.OutOfMemoryError("CUDA out of memory")
        memory.windows = windows

    model.register_forward_hook(forward_hook)
    cfg = config.train.model_copy(update={"probe_memory_fraction": 0.5})  # 512 MB: 8 windows
    assert probe_micro_batch(model, MODES[mode], train_set[0], cfg, torch.device("cpu"), memory) == 8
    assert seen == [64, 32, 16, 8]
    assert all(p.grad is None for p in model.parameters())  # probing leaves no gradients behind
