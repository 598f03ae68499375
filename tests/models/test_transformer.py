import pytest
import torch

from aurl.config import GenerateConfig, ModelConfig
from aurl.generation.sampler import filter_logits, penalise_repeats, sample
from aurl.models.layers import Linear
from aurl.models.transformer import Transformer

VOCAB = 50


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Transformer(ModelConfig(d_model=32, n_layers=2, n_heads=4, context=64), VOCAB).eval()


def test_changing_token_t_never_changes_logits_before_t(model):
    x = torch.randint(0, VOCAB, (2, 40))
    base = model(x)
    for t in (0, 13, 39):
        y = x.clone()
        y[:, t] = (y[:, t] + 7) % VOCAB
        out = model(y)
        assert torch.equal(out[:, :t], base[:, :t])
        assert not torch.allclose(out[:, t:], base[:, t:])


@pytest.mark.parametrize("shape", [(1, 1, 48), (3, 1, 48), (2, 5, 48), (8, 16, 48)])
def test_linear_decoding_path_equals_f_linear(shape):
    layer, threads = Linear(48, 96, bias=False), torch.get_num_threads()
    x = torch.randn(shape)
    expected = torch.nn.functional.linear(x, layer.weight)
    try:
        torch.set_num_threads(2)  # the row blocks need two threads
        with torch.no_grad():
            out = layer(x)
    finally:
        torch.set_num_threads(threads)
    assert out.shape == expected.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_output_embedding_is_tied_to_the_input(model):
    assert model.head.weight is model.embed.weight


def test_cached_logits_equal_full_forward(model):
    x = torch.randint(0, VOCAB, (3, 30))
    full = model(x)
    cache = model.new_cache(3)
    parts = [model(x[:, :11], cache), model(x[:, 11:12], cache), model(x[:, 12:], cache)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_cached_generation_equals_uncached_token_for_token_past_the_context(model):
    prompt = torch.randint(0, VOCAB, (4, 3))
    settings = GenerateConfig(max_tokens=150, temperature=0.9, top_k=20, top_p=0.95, min_p=0.02, repetition_penalty=1.3)
    with_cache = sample(model, prompt, settings, generator=torch.Generator().manual_seed(5), use_cache=True)
    without = sample(model, prompt, settings, generator=torch.Generator().manual_seed(5), use_cache=False)
    assert with_cache.shape == (4, 153)  # the context is 64: the window slid twice
    assert torch.equal(with_cache, without)


def test_generation_pads_after_eos_and_stops_at_a_bar_count(model):
    prompt = torch.zeros(2, 1, dtype=torch.long)
    hot = GenerateConfig(max_tokens=60, temperature=5.0)
    out = sample(model, prompt, hot, eos_id=7, pad_id=0, generator=torch.Generator().manual_seed(0))
    for row in out.tolist():
        if 7 in row:
            assert all(t == 0 for t in row[row.index(7) + 1 :])
    # token 9 plays "bar": each row holds at most 3 of them and ends with EOS where a 4th would start
    bars = GenerateConfig(max_tokens=400, temperature=3.0, max_bars=3)
    prompt = torch.zeros(32, 1, dtype=torch.long)
    out = sample(model, prompt, bars, eos_id=7, pad_id=0, bar_ids=[9], generator=torch.Generator().manual_seed(1))
    for row in out.tolist():
        assert row.count(9) <= 3
    assert any(row.count(9) == 3 and 7 in row for row in out.tolist())


def test_a_piece_does_not_end_before_its_min_bars(model):
    """Token 9 plays "bar" and 7 the end: hot sampling ends some rows within three bars, unless min_bars says
    a piece is at least four bars long."""
    prompt = torch.zeros(32, 1, dtype=torch.long)
    draw = {"eos_id": 7, "pad_id": 0, "bar_ids": [9]}

    def ended(settings: GenerateConfig) -> list[int]:
        out = sample(model, prompt, settings, **draw, generator=torch.Generator().manual_seed(1)).tolist()
        return [row[: row.index(7)].count(9) for row in out if 7 in row]  # bars opened before each end

    free = GenerateConfig(max_tokens=400, temperature=3.0)
    assert min(ended(free)) < 4
    floor = ended(free.model_copy(update={"min_bars": 4}))
    assert floor and min(floor) >= 4


def test_min_p_and_the_repetition_penalty():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_logits(logits, 1.0, min_p=0.4)).tolist() == [[True, True, False, False]]
    raw = torch.tensor([[2.0, -1.0, 3.0]])
    assert penalise_repeats(raw, torch.tensor([[0, 1]]), 2.0).tolist() == [[1.0, -2.0, 3.0]]


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_logits(logits, 1.0, 2, 1.0)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, 1.0, 0, 0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, 1.0, 0, 0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, 1.0, 0, 1.0)).all()
