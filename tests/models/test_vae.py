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
    assert float(out["loss"] - out["recon"]) == pytest.approx(0.5 + 0.1 + 0.1)
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
    from aurl.generation.generate import generate
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
    samples = generate(tmp_path, tmp_path / "out", "latest", log=lambda s: None, num=2, max_tokens=64)
    assert len(samples) == 2
    for sample in samples:
        symusic.Score(str(sample.midi))
    # Interpolation: S files; its ends decode exactly as the reconstructions of a and b (greedy decoding).
    a, b = midi_dir / "piece_0.mid", midi_dir / "piece_1.mid"
    greedy = {"log": lambda s: None, "max_tokens": 64, "top_k": 1}
    path = generate(tmp_path, tmp_path / "path", "latest", interpolate=(a, b), steps=4, **greedy)
    assert len(path) == 4
    for end, source in ((path[0], a), (path[-1], b)):
        recon = generate(tmp_path, tmp_path / source.stem, "latest", encode=source, num=1, **greedy)
        assert end.midi.read_bytes() == recon[0].midi.read_bytes()
        symusic.Score(str(end.midi))


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
