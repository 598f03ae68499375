"""The training framework's capabilities, each on the tiny config: accumulation, precision, activation
checkpointing, stability, checkpoint fallback, early stopping, monitoring and profiling."""

import json
import math

import pytest
import torch
from torch.utils.data import default_collate

from aurl.training.checkpoint import latest_good_checkpoint
from aurl.training.distributed import unwrap
from aurl.training.monitor import SpikeDetector
from tests.conftest import tiny_trainer


def _params(trainer):
    return [p.detach().clone() for p in unwrap(trainer.model).parameters()]


def _windows(trainer, n):
    """n validation windows, the partly padded ones first, so weighting by targets matters."""
    ds = trainer.valid_loader.dataset
    items = sorted((ds[i] for i in range(len(ds))), key=lambda item: float(item["weight"]))
    assert float(items[0]["weight"]) < ds.seq_len
    return items[:n]


def test_accumulated_micro_batches_equal_one_large_batch(prepared, tmp_path):
    one = tiny_trainer(prepared, tmp_path / "a")
    two = tiny_trainer(prepared, tmp_path / "b", ["train.grad_accum=2"])
    items = _windows(one, 4)
    loss_one, norm_one, _ = one._train_step([default_collate(items)])
    loss_two, norm_two, _ = two._train_step([default_collate(items[:1]), default_collate(items[1:])])
    assert loss_one == pytest.approx(loss_two, rel=1e-6)
    assert norm_one == pytest.approx(norm_two, rel=1e-5)
    # the gradients summed (Adam's first moments after its first step), then the weights: where an element's
    # gradient cancels to rounding error, Adam's first step (about lr x g / |g|) may move it either way
    moments = [[t.optimizer.state[p]["exp_avg"] for p in unwrap(t.model).parameters()] for t in (one, two)]
    for a, b in zip(*moments, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)
    lr = one.optimizer.param_groups[0]["lr"]
    for a, b in zip(_params(one), _params(two), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=lr)


def test_bf16_autocast_step_on_cpu(prepared, tmp_path):
    fp32 = tiny_trainer(prepared, tmp_path / "a")
    bf16 = tiny_trainer(prepared, tmp_path / "b", ["train.precision=bf16"])
    batch = default_collate(_windows(fp32, 4))
    before = _params(bf16)
    loss32, _, _ = fp32._train_step([batch])
    loss16, _, stepped = bf16._train_step([batch])
    assert stepped and math.isfinite(loss16)
    assert loss16 == pytest.approx(loss32, rel=0.02)  # same maths at lower precision
    assert any(not torch.equal(a, b) for a, b in zip(before, _params(bf16), strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with GradScaler needs CUDA")
def test_fp16_with_grad_scaler_on_cuda(prepared, tmp_path):
    trainer = tiny_trainer(prepared, tmp_path, ["train.precision=fp16", "train.device=cuda"])
    trainer.fit()
    assert trainer.scaler.is_enabled() and trainer.step == trainer.cfg.max_steps


def test_activation_checkpointing_gives_the_same_gradients(prepared, tmp_path):
    plain = tiny_trainer(prepared, tmp_path / "a")
    ckpt = tiny_trainer(prepared, tmp_path / "b", ["train.activation_checkpointing=every"])
    assert unwrap(ckpt.model).checkpoint_every == 1
    batch = default_collate(_windows(plain, 4))
    grads = []
    for trainer in (plain, ckpt):
        trainer.objective(batch)["loss"].backward()
        grads.append([p.grad.clone() for p in unwrap(trainer.model).parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_auto_activation_checkpointing_follows_the_budget(prepared, tmp_path):
    small = tiny_trainer(
        prepared, tmp_path / "a", ["train.activation_checkpointing=auto", "train.activation_budget_mb=0.01"]
    )
    large = tiny_trainer(prepared, tmp_path / "b", ["train.activation_checkpointing=auto"])
    assert unwrap(small.model).checkpoint_every == 1 and unwrap(large.model).checkpoint_every == 0


class NaNAt:
    """Wraps an objective so that the given training calls return a NaN loss."""

    def __init__(self, objective, calls):
        self.objective, self.calls, self.n = objective, set(calls), 0

    def __call__(self, batch):
        out = self.objective(batch)
        if torch.is_grad_enabled():
            self.n += 1
            if self.n in self.calls:
                out["loss"] = out["loss"] * float("nan")
        return out


def _train_log(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_nan_step_is_skipped_and_training_carries_on(prepared, tmp_path):
    trainer = tiny_trainer(prepared, tmp_path, ["train.log_interval=1"])
    trainer.objective = NaNAt(trainer.objective, [4])
    trainer.fit()
    assert trainer.step == 30 and trainer.counters["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in _params(trainer))
    log = [m for m in _train_log(tmp_path) if m["split"] == "train"]
    assert log[3]["skipped_steps"] == 1 and log[-1]["loss"] < log[0]["loss"]
    assert trainer.scheduler.last_epoch == 29  # the schedule did not advance on the skipped step


def test_repeated_nan_steps_reload_the_last_checkpoint_with_lower_lr(prepared, tmp_path):
    trainer = tiny_trainer(prepared, tmp_path, ["train.save_interval=5", "train.stability.nan_patience=3"])
    trainer.objective = NaNAt(trainer.objective, [11, 12, 13])
    trainer.fit()
    assert trainer.counters == {"skipped_steps": 3, "grad_spikes": trainer.counters["grad_spikes"], "recoveries": 1}
    assert trainer.lr_scale == 0.5
    assert trainer.step == 30 and all(torch.isfinite(p).all() for p in _params(trainer))


def test_nan_steps_before_any_checkpoint_stop_with_a_clear_error(prepared, tmp_path):
    from aurl.training.trainer import TrainingError

    trainer = tiny_trainer(prepared, tmp_path, ["train.stability.nan_patience=2"])
    trainer.objective = NaNAt(trainer.objective, [1, 2])
    with pytest.raises(TrainingError, match="non-finite steps in a row"):
        trainer.fit()


def test_a_truncated_checkpoint_is_refused_and_the_previous_one_used(prepared, tmp_path):
    trainer = tiny_trainer(prepared, tmp_path, ["train.save_interval=10", "train.keep_last=5"])
    trainer.fit()
    state = tmp_path / "checkpoints" / "step_30" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    warnings = []
    assert latest_good_checkpoint(tmp_path, warnings.append).name == "step_20"
    assert "step_30" in warnings[0] and "corrupt" in warnings[0]
    resumed = tiny_trainer(prepared, tmp_path / "again", ["train.save_interval=10"])
    resumed.resume(tmp_path / "checkpoints" / "step_20")
    assert resumed.step == 20


def test_early_stopping_ends_a_run_that_stopped_improving(prepared, tmp_path):
    trainer = tiny_trainer(
        prepared,
        tmp_path,
        [
            "train.lr=1e-9",
            "train.min_lr=0",
            "train.eval_interval=2",
            "train.early_stopping.enabled=true",
            "train.early_stopping.patience=2",
            "train.early_stopping.min_delta=0.01",
        ],
    )
    trainer.fit()
    assert trainer.step == 6  # evals at 2 (best), 4 and 6 without improvement
    assert (tmp_path / "checkpoints" / "step_6").is_dir()


def test_max_epochs_stops_training(prepared, tmp_path):
    trainer = tiny_trainer(prepared, tmp_path, ["train.max_epochs=0.5", "train.max_steps=1000"])
    trainer.fit()
    assert 0.5 <= trainer._epoch() < 0.5 + 32 / trainer.sampler.num_windows + 1e-9
    assert trainer.step < 1000


def test_logs_carry_throughput_memory_and_curriculum(prepared, tmp_path):
    trainer = tiny_trainer(
        prepared,
        tmp_path,
        [
            "train.curriculum.enabled=true",
            "train.curriculum.start_len=32",
            "train.curriculum.multiple=16",
            "train.curriculum.steps=20",
            "train.log_interval=5",
            "train.max_steps=25",
        ],
    )
    trainer.fit()
    log = [m for m in _train_log(tmp_path) if m["split"] == "train"]
    for key in ("tokens_per_s", "samples_per_s", "mfu", "data_wait_share", "mem_peak_rss_mb", "lr", "grad_norm"):
        assert all(m[key] >= 0 for m in log), key
    assert 0 < log[-1]["mfu"] < 1 and 0 <= log[-1]["data_wait_share"] < 1
    lengths = [m["seq_len"] for m in log]
    assert lengths[0] == 32 and lengths[-1] == 64 and lengths == sorted(lengths)
    assert all(512 - m["seq_len"] < m["seq_len"] * m["batch_size"] <= 512 for m in log)  # the token budget
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert {"train/loss", "train/tokens_per_s", "train/mfu", "train/seq_len", "valid/loss"} <= set(tb.Tags()["scalars"])


def test_profiler_writes_a_trace(prepared, tmp_path):
    trainer = tiny_trainer(prepared, tmp_path, ["train.max_steps=6"])
    trainer.profile_steps = (2, 4)
    trainer.fit()
    assert list((tmp_path / "tb" / "profile").glob("*.pt.trace.json"))


def test_gradient_norm_spikes_are_flagged():
    spikes = SpikeDetector(factor=10, window=20)
    assert not any(spikes(1.0 + 0.01 * i) for i in range(10))
    assert spikes(50.0) and not spikes(1.2)


def test_compiled_model_trains_like_the_eager_one(prepared, tmp_path):
    eager = tiny_trainer(prepared, tmp_path / "a")
    compiled = tiny_trainer(prepared, tmp_path / "b", ["train.compile=true"])
    batch = default_collate(_windows(eager, 4))
    for _ in range(2):
        loss_e, _, _ = eager._train_step([batch])
        loss_c, _, _ = compiled._train_step([batch])
        assert loss_c == pytest.approx(loss_e, rel=1e-4)


def test_trainer_state_restores_every_random_generator(prepared, tmp_path):
    import random

    import numpy as np

    trainer = tiny_trainer(prepared, tmp_path)
    np.random.standard_normal(3)  # leaves a cached gaussian in numpy's state
    torch.save(trainer.state_dict(), tmp_path / "state.pt")
    expected = (random.random(), np.random.standard_normal(), torch.rand(1).item())
    trainer.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert (random.random(), np.random.standard_normal(), torch.rand(1).item()) == expected


def test_resuming_with_another_model_shape_is_refused(prepared, tmp_path):
    from aurl.errors import CheckpointError

    tiny_trainer(prepared, tmp_path, ["train.max_steps=2", "train.save_interval=2"]).fit()
    wider = tiny_trainer(prepared, tmp_path / "b", ["model.d_model=64"])
    with pytest.raises(CheckpointError, match="do not fit this model"):
        wider.resume(tmp_path / "checkpoints" / "step_2")
    deeper = tiny_trainer(prepared, tmp_path / "c", ["model.n_layers=3"])
    with pytest.raises(CheckpointError, match="names differ"):
        deeper.resume(tmp_path / "checkpoints" / "step_2")
