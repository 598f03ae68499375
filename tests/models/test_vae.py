import json
import math

import pytest
import symusic
import torch

from aurl.config import VAEConfig
from aurl.training.objectives import VAEObjective, beta_at, kl_per_dim


def test_kl_equals_the_closed_form():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.log(torch.tensor([[1.0, 4.0]]))  # sigma 1 and 2
    expected = [0.5 * (1 + 1 - 1 - 0), 0.5 * (0 + 4 - 1 - math.log(4))]
    assert kl_per_dim(mu, logvar).tolist() == pytest.approx(expected)


class FixedVAE(torch.nn.Module):
    """Returns given logits, mu and logvar: isolates the objective's arithmetic."""

    def __init__(self, mu, logvar):
        super().__init__()
        self.mu, self.logvar = mu, logvar

    def forward(self, input_ids, mask):
        return torch.zeros(*input_ids.shape, 5), self.mu, self.logvar


def test_free_bits_clamp_each_dimension_from_below():
    mu = torch.tensor([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0]])
    logvar = torch.zeros(2, 3)
    kl = kl_per_dim(mu, logvar)  # 0.5, 0.005, 0
    batch = {
        "input_ids": torch.zeros(2, 4, dtype=torch.long),
        "mask": torch.ones(2, 4, dtype=torch.bool),
        "targets": torch.zeros(2, 4, dtype=torch.long),
    }
    objective = VAEObjective(FixedVAE(mu, logvar), VAEConfig(beta=1.0, anneal="none", free_bits=0.1))
    out = objective(batch)
    # per token: the segment's clamped KL spread over its 4 targets
    assert float(out["loss"] - out["recon"]) == pytest.approx((0.5 + 0.1 + 0.1) / 4)
    assert float(out["kl"]) == pytest.approx(float(kl.sum()))


@pytest.mark.parametrize(
    ("anneal", "expected"),
    [
        ("none", {0: 2.0, 50: 2.0}),
        ("linear", {0: 0.0, 25: 0.5, 100: 2.0, 400: 2.0}),
        ("cosine", {0: 0.0, 50: 1.0, 100: 2.0}),
        ("cyclical", {0: 0.0, 25: 1.0, 50: 2.0, 99: 2.0, 100: 0.0, 125: 1.0}),
    ],
)
def test_kl_annealing_schedules(anneal, expected):
    cfg = VAEConfig(beta=2.0, anneal=anneal, anneal_steps=100)
    assert {s: beta_at(s, cfg) for s in expected} == pytest.approx(expected)


def test_vae_trains_on_segments_and_samples_from_its_prior(prepared, midi_dir, tmp_path):
    from aurl.config import load_config
    from aurl.generation.requests import Encode, Interpolate, generate
    from aurl.training.run import train
    from tests.conftest import TINY

    sets = [
        f"data.dataset={prepared}",
        "model.mode=vae",
        "model.latent_dim=8",
        "vae.anneal_steps=20",
        "data.segment_bars=2",
    ]
    train(load_config(TINY, sets), tmp_path, progress=False, log=lambda s: None)
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    recon = [m["recon"] for m in log if m["split"] == "valid"]
    assert recon[-1] < recon[0]
    assert {"kl", "active_units", "beta"} <= set(log[-1])
    kl_dims = [log[-1][f"kl_dim/{i:02d}"] for i in range(8)]  # the whole vector, one scalar per dimension
    assert sum(kl_dims) == pytest.approx(log[-1]["kl"], rel=1e-4)
    # its likelihood bound (negative ELBO) on held-out pieces falls as it learns
    from aurl.evaluation.likelihood import likelihood

    early, late = (likelihood(tmp_path, prepared, "valid", step) for step in ("step_15", "step_30"))
    assert early["bound"] and late["kl_nats_per_segment"] > 0
    assert late["bits_per_note"] < early["bits_per_note"]
    assert late["tokens"] == sum(len(p) for p in _valid(prepared)) + late["segments"]  # every token, and EOS
    samples = generate(tmp_path, tmp_path / "out", "latest", log=lambda s: None, num=2, max_tokens=64)
    assert len(samples) == 2
    for sample in samples:
        symusic.Score(str(sample.midi))
    # Interpolation: S files; its ends decode exactly as the reconstructions of a and b (greedy decoding).
    a, b = midi_dir / "piece_0.mid", midi_dir / "piece_1.mid"
    greedy = {"log": lambda s: None, "max_tokens": 64, "top_k": 1}
    path = generate(
        tmp_path, tmp_path / "path", "latest", request=Interpolate(song=str(a), to=str(b)), steps=4, **greedy
    )
    assert len(path) == 4
    for end, source in ((path[0], a), (path[-1], b)):
        recon = generate(tmp_path, tmp_path / source.stem, "latest", request=Encode(song=str(source)), num=1, **greedy)
        assert end.midi.read_bytes() == recon[0].midi.read_bytes()
        symusic.Score(str(end.midi))


@pytest.mark.parametrize("injection", ["prefix", "both"])
@pytest.mark.parametrize("attention", ["full", "hierarchical"])
def test_latent_prefix_conditions_the_decoder_alike_with_and_without_the_cache(injection, attention):
    from aurl.config import ModelConfig
    from aurl.models.vae import VAE

    torch.manual_seed(0)
    cfg = ModelConfig(
        mode="vae", d_model=32, n_layers=2, n_heads=2, context=24, latent_dim=4, latent_injection=injection,
        latent_prefix=2, attention=attention, window=4, global_positions="every", global_every=5,
    )  # fmt: skip
    model = VAE(cfg, 20).eval()
    for layer in (model.to_prefix, model.from_latent):  # zero at init: give z a voice
        if layer is not None:
            torch.nn.init.normal_(layer.weight)
    ids, z = torch.randint(3, 20, (2, 24)), torch.randn(2, 4)  # the full context: the prefix comes on top
    with torch.no_grad():
        full = model.decode(ids, z)
        cache = model.new_cache(2)
        steps = torch.cat([model.decode(ids[:, i : i + 1], z, cache) for i in range(ids.shape[1])], dim=1)
        other = model.decode(ids, torch.randn(2, 4))
    assert full.shape == (2, 24, 20)
    assert torch.allclose(full, steps, atol=1e-4)
    assert not torch.allclose(full[:, 0], other[:, 0])  # the first token already depends on z


def test_slerp_follows_the_great_circle():
    from aurl.generation.latent import slerp

    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert slerp(a, b, 0.0).tolist() == pytest.approx([1.0, 0.0])
    assert slerp(a, b, 1.0).tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    assert slerp(a, b, 0.5).tolist() == pytest.approx([math.sqrt(0.5)] * 2)


def test_latent_generation_from_the_command_line(prepared, midi_dir, tmp_path):
    from aurl.cli import main

    run = tmp_path / "run"
    sets = [f"data.dataset={prepared}", "model.mode=vae", "model.latent_dim=8", "train.max_steps=4"]
    from tests.conftest import TINY

    args = ["train", "--config", str(TINY), "--run-dir", str(run), "--no-progress"]
    assert main([*args, *(x for s in sets for x in ("--set", s))]) == 0
    a, b = str(midi_dir / "piece_0.mid"), str(midi_dir / "piece_1.mid")
    common = ["generate", "--run", str(run), "--max-tokens", "32"]
    assert main([*common, "--interpolate", a, b, "--steps", "3", "--out", str(tmp_path / "i")]) == 0
    assert len(list((tmp_path / "i").glob("*.mid"))) == 3
    assert main([*common, "--encode", a, "--num", "2", "--out", str(tmp_path / "e")]) == 0
    assert main([*common, "--z-temperature", "0.5", "--num", "2", "--out", str(tmp_path / "s")]) == 0
    assert main([*common, "--encode", str(tmp_path / "missing.mid")]) == 2


def _gan_objective(**gan):
    from aurl.config import GANConfig, ModelConfig
    from aurl.models.vae import VAE
    from aurl.training.objectives import VAEGANObjective

    torch.manual_seed(0)
    cfg = ModelConfig(mode="vae_gan", d_model=32, n_layers=1, n_heads=2, context=32, latent_dim=4, encoder_layers=1)
    model = VAE(cfg, 20)
    settings = GANConfig(critic_d_model=16, critic_layers=1, critic_heads=2, adv_start=0, adv_warmup=1, **gan)
    objective = VAEGANObjective(model, VAEConfig(anneal="none"), settings, 20, 32)
    objective.set_step(5)
    ids = torch.randint(3, 20, (4, 12))
    batch = {"input_ids": ids, "mask": torch.ones(4, 12, dtype=torch.bool), "targets": ids.roll(-1, 1)}
    return model, objective, batch


def test_gradients_reach_the_generator_through_the_critic():
    def decoder_grad(adv_weight):
        model, objective, batch = _gan_objective(adv_weight=adv_weight, fm_weight=0.0, r1_gamma=1.0)
        torch.manual_seed(1)  # the same Gumbel noise for both
        out = objective(batch)
        critic_grads = [p.grad.clone() for p in objective.critic.parameters()]
        out["loss"].backward()
        # the generator's loss leaves the critic alone: its gradients are still those of its own step
        assert all(torch.equal(a, p.grad) for a, p in zip(critic_grads, objective.critic.parameters(), strict=True))
        assert {"critic_loss", "critic_accuracy", "adversarial", "feature_matching"} <= set(out)
        return model.decoder.blocks[0].mlp.up.weight.grad.clone()

    assert not torch.allclose(decoder_grad(1.0), decoder_grad(0.0))  # the adversarial term reaches the decoder


def test_spectral_norm_keeps_the_critics_largest_singular_value_near_one():
    _, objective, batch = _gan_objective()
    for _ in range(5):
        objective(batch)  # critic steps update the power-iteration estimate
    for name, module in objective.critic.named_modules():
        if isinstance(module, torch.nn.Linear):
            sigma = torch.linalg.matrix_norm(module.weight.detach(), ord=2)
            assert float(sigma) == pytest.approx(1.0, abs=0.1), name


def test_vae_gan_trains_and_resumes_exactly(prepared, tmp_path):
    from tests.conftest import tiny_trainer

    sets = [
        "model.mode=vae_gan",
        "model.latent_dim=8",
        "data.segment_bars=2",
        "train.max_steps=12",
        "train.save_interval=6",
        "train.keep_last=5",
        "train.log_interval=1",
        "train.eval_interval=6",
        "gan.adv_start=2",
        "gan.adv_warmup=2",
        "gan.critic_d_model=16",
        "gan.critic_layers=1",
        "gan.r1_gamma=0.1",
        "model.dropout=0.1",
    ]
    whole = tiny_trainer(prepared, tmp_path / "whole", sets)
    whole.fit()
    log = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    train_log = [m for m in log if m["split"] == "train"]
    assert all(math.isfinite(m["loss"]) for m in train_log) and "critic_accuracy" in train_log[-1]
    resumed = tiny_trainer(prepared, tmp_path / "resumed", sets)
    resumed.resume(tmp_path / "whole" / "checkpoints" / "step_6")
    resumed.fit()
    again = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [m["loss"] for m in again if m["split"] == "train"] == [m["loss"] for m in train_log[6:]]


def _valid(prepared):
    from aurl.data.dataset import PreparedDataset

    return PreparedDataset(prepared).pieces("valid")
