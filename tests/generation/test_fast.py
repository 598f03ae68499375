import logging

import pytest
import symusic
import torch

from aurl.cli import main
from aurl.config import GenerateConfig, ModelConfig
from aurl.generation import fast
from aurl.generation.fast import FastDecoder
from aurl.generation.sampler import sample
from aurl.models.transformer import Transformer
from tests.conftest import make_midi, needs_cxx

VOCAB = 50


def tiny(seed: int = 0, **kw) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(ModelConfig(d_model=32, n_layers=2, n_heads=2, context=64, **kw), VOCAB).eval()


@pytest.fixture(scope="module")
def model() -> Transformer:
    return tiny()


@pytest.fixture(scope="module")
def decoder(model) -> FastDecoder:
    decoder = FastDecoder(model)
    assert decoder.warm_up(1) and decoder.warm_up(3), decoder.reason  # compiles both batch classes
    return decoder


@needs_cxx
@torch.inference_mode()
def test_compiled_steps_give_the_models_logits_and_fill_its_cache(model, decoder):
    x = torch.randint(0, VOCAB, (3, 63))  # up to the last position the graph takes (context - 1)
    ours, theirs = decoder.new_cache(3), model.new_cache(3)
    steps = [(decoder(x[:, :5], ours), model(x[:, :5], theirs))]  # a prompt: the model reads it
    steps += [(decoder(x[:, t : t + 1], ours), model(x[:, t : t + 1], theirs)) for t in range(5, 63)]
    for mine, expected in steps:  # sums run in another order: equal to float rounding
        torch.testing.assert_close(mine, expected, atol=1e-5, rtol=1e-5)
    assert ours.length == theirs.length == 63
    torch.testing.assert_close(ours.k, theirs.k, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.v, theirs.v, atol=1e-5, rtol=1e-5)


@needs_cxx
@pytest.mark.parametrize("batch", [1, 3])
def test_sampling_through_it_draws_the_models_tokens(model, decoder, batch):
    # 300 tokens in a context of 64: the window slides, prompts are read again, and the step that fills
    # the context's last position goes to the model
    settings = GenerateConfig(max_tokens=300, temperature=0.9, top_k=20, top_p=0.95, repetition_penalty=1.2)
    prompt = torch.randint(0, VOCAB, (batch, 3), generator=torch.Generator().manual_seed(batch))
    compiled = sample(decoder, prompt, settings, generator=torch.Generator().manual_seed(7))
    eager = sample(model, prompt, settings, generator=torch.Generator().manual_seed(7))
    assert compiled.shape == (batch, 303)
    assert torch.equal(compiled, eager)
    assert decoder.reason is None  # and the compiled steps ran all along


@needs_cxx
@torch.inference_mode()
def test_new_weights_are_packed_again(decoder):  # decoder: the graph of this shape is compiled already
    model = tiny(seed=1)
    fresh = FastDecoder(model)
    model.load_state_dict(tiny(seed=2).state_dict())  # copies in place: the packed weights are stale now
    x = torch.randint(0, VOCAB, (1, 6))
    ours, theirs = fresh.new_cache(1), model.new_cache(1)
    fresh(x[:, :5], ours), model(x[:, :5], theirs)
    torch.testing.assert_close(fresh(x[:, 5:], ours), model(x[:, 5:], theirs), atol=1e-5, rtol=1e-5)


def test_a_failed_compilation_decodes_eagerly_and_says_so_once(monkeypatch, caplog):
    def no_compiler(fn):
        def fail(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return fail

    monkeypatch.setattr(fast, "_compile", no_compiler)
    monkeypatch.setattr(fast, "_compiled", None)
    model = tiny()
    decoder = FastDecoder(model)
    settings = GenerateConfig(max_tokens=80)
    prompt = torch.zeros(2, 1, dtype=torch.long)
    with caplog.at_level(logging.INFO, logger="aurl.generation.fast"):
        ours = sample(decoder, prompt, settings, generator=torch.Generator().manual_seed(3))
    eager = sample(model, prompt, settings, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ours, eager)
    assert [r.getMessage() for r in caplog.records] == [
        "compiled decoding failed (RuntimeError: InvalidCxxCompiler: No working C++ compiler found); decoding eagerly"
    ]
    assert not decoder.warm_up()


def test_models_it_does_not_compile_are_decoded_by_themselves(caplog):
    with caplog.at_level(logging.INFO, logger="aurl.generation.fast"):
        decoder = FastDecoder(tiny(attention="sliding", window=8))
    assert decoder.reason == "attention sliding" and not decoder.warm_up()
    assert "attention sliding; decoding eagerly" in caplog.text
    x = torch.randint(0, VOCAB, (2, 12))
    with torch.inference_mode():
        ours, theirs = decoder.new_cache(2), decoder.model.new_cache(2)
        for t in range(12):
            assert torch.equal(decoder(x[:, t : t + 1], ours), decoder.model(x[:, t : t + 1], theirs))


@needs_cxx
@pytest.mark.parametrize("task", [[], ["--accompany", "{song}", "--add", "33"]], ids=["generate", "accompany"])
def test_the_cli_writes_the_same_pieces_compiled(task, trained_run, mmm_run, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="aurl.generation.fast")
    make_midi(song := tmp_path / "song.mid", seed=3, bars=4, drums=False)
    run = mmm_run if task else trained_run
    # a tiny model trained for seconds ends many pieces at once: at least 32 tokens each
    args = [a.format(song=song) for a in task] + ["--run", str(run), "--num", "2", "--max-tokens", "120"]
    args += ["--min-tokens", "32"]
    for out in ("eager", "compiled"):
        assert (
            main(
                [
                    "generate",
                    *args,
                    "--seed",
                    "5",
                    "--out",
                    str(tmp_path / out),
                    *(["--compiled"] * (out == "compiled")),
                ]
            )
            == 0
        )
    eager, compiled = sorted((tmp_path / "eager").glob("*.mid")), sorted((tmp_path / "compiled").glob("*.mid"))
    assert len(eager) == 2 and [p.name for p in eager] == [p.name for p in compiled]
    assert any(track.notes for a in eager for track in symusic.Score(a).tracks)  # pieces with notes
    for a, b in zip(eager, compiled, strict=True):
        assert a.read_bytes() == b.read_bytes()  # the same for the same seed
    assert "decoding eagerly" not in caplog.text  # the compiled steps did run
