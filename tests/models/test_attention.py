import pytest
import torch
import torch.nn.functional as F

from aurl.config import ModelConfig
from aurl.models.layers import CausalSelfAttention, local_global_mask
from aurl.models.transformer import Transformer

VOCAB, BAR = 40, 3


def _model(attention, window=8, layers=2, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=layers, n_heads=4, context=128, attention=attention, window=window, **kw)
    return Transformer(cfg, VOCAB, bar_ids=[BAR]).eval()


def _tokens(t=60, batch=2, seed=1):
    x = torch.randint(4, VOCAB, (batch, t), generator=torch.Generator().manual_seed(seed))
    x[:, ::7] = BAR  # a bar every 7 tokens
    return x


@pytest.mark.parametrize("attention", ["sliding", "hierarchical"])
def test_equal_to_full_attention_when_the_window_covers_the_sequence(attention):
    full = _model("full")
    local = _model(attention, window=64)
    local.load_state_dict(full.state_dict())
    x = _tokens()
    torch.testing.assert_close(local(x), full(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["sliding", "hierarchical"])
def test_no_token_sees_the_future(attention):
    model, x = _model(attention), _tokens()
    base = model(x)
    for t in (0, 9, 30, 59):
        y = x.clone()
        y[:, t] = (y[:, t] + 1) % VOCAB
        assert torch.equal(model(y)[:, :t], base[:, :t])


def test_sliding_window_limits_what_a_token_sees():
    model, x = _model("sliding", window=8, layers=1), _tokens()
    y = x.clone()
    y[:, 20] = (y[:, 20] + 1) % VOCAB
    changed = (model(y) - model(x)).abs().amax(dim=(0, 2)) > 0
    assert changed.nonzero().flatten().tolist() == list(range(20, 28))  # positions 20 .. 20 + window - 1


def test_global_positions_are_seen_from_everywhere_after_them():
    model, x = _model("hierarchical", window=8, layers=1), _tokens()
    y = x.clone()
    y[:, 22] = BAR  # a new global position (bars stand at multiples of 7)
    # (1e-6: one more global key changes the padded shapes, and with them float rounding, not what is seen)
    changed = (model(y) - model(x)).abs().amax(dim=(0, 2)) > 1e-6
    assert changed[22:].all() and not changed[:22].any()
    every = _model("hierarchical", window=8, layers=1, global_positions="every", global_every=10)
    assert every.global_positions(x, 0)[0].nonzero().flatten().tolist() == [0, 10, 20, 30, 40, 50]


def test_chunked_attention_equals_one_dense_masked_product():
    torch.manual_seed(0)
    attn = CausalSelfAttention(32, 4, window=8)
    q, k, v = (torch.randn(2, 4, 45, 8) for _ in range(3))
    is_global = torch.rand(2, 45) < 0.15
    pos = torch.arange(45)
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=local_global_mask(pos, pos, 8, is_global))
    torch.testing.assert_close(attn._chunked(q, k, v, is_global), dense, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("attention", ["sliding", "hierarchical"])
def test_cached_decoding_equals_the_full_forward(attention):
    model, x = _model(attention), _tokens(t=40)
    full = model(x)
    cache = model.new_cache(2)
    assert cache.k.shape[3] == 8  # the ring keeps only `window` positions
    parts = [model(x[:, :13], cache), model(x[:, 13:18], cache)] + [
        model(x[:, i : i + 1], cache) for i in range(18, 40)
    ]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
