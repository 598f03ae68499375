import miditok
import pytest
import torch

from aurl.config import GenerateConfig, ModelConfig
from aurl.data.prepare import tokenize_score
from aurl.data.tokenize import base_tokens, encode_bpe, learn_bpe
from aurl.errors import ConfigError
from aurl.generation.generate import tokens_to_score
from aurl.generation.grammar import Grammar
from aurl.generation.sampler import sample
from aurl.models.transformer import Transformer
from tests.conftest import make_midi

TOKENIZERS = {
    "REMI": lambda: miditok.REMI(
        miditok.TokenizerConfig(
            use_programs=True, use_time_signatures=True, use_tempos=True, use_rests=True, remove_duplicated_notes=True
        )
    ),
    "TSD": lambda: miditok.TSD(miditok.TokenizerConfig(use_programs=True, remove_duplicated_notes=True)),
    "MIDILike": lambda: miditok.MIDILike(miditok.TokenizerConfig(use_programs=True, remove_duplicated_notes=True)),
}


def _random_samples(tokenizer, grammar, seed=0):
    """Samples of an untrained model: the worst case for a grammar, every token is likely."""
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, context=128), len(tokenizer)).eval()
    prompt = torch.full((6, 1), tokenizer["BOS_None"])
    settings = GenerateConfig(max_tokens=300)  # past the context: the window slides
    gen = torch.Generator().manual_seed(seed)
    seqs = sample(model, prompt, settings, grammar, tokenizer["EOS_None"], tokenizer.pad_token_id, generator=gen)
    return [tokens_to_score(tokenizer, row[1:]) for row in seqs.tolist()]


def _with_bpe(tokenizer, folder):
    """The tokenizer with 150 BPE ids learned on six synthetic pieces."""
    pieces = [tokenize_score(tokenizer, make_midi(folder / f"{i}.mid", i, bars=8)) for i in range(6)]
    learn_bpe(tokenizer, pieces, len(tokenizer) + 150)
    assert tokenizer.is_trained and len(tokenizer) > len(tokenizer.vocab)
    return tokenizer, pieces


@pytest.mark.parametrize("bpe", [False, True])
@pytest.mark.parametrize("kind", sorted(TOKENIZERS))
def test_constrained_samples_decode_with_zero_skipped_tokens(kind, bpe, tmp_path):
    tokenizer = _with_bpe(TOKENIZERS[kind](), tmp_path)[0] if bpe else TOKENIZERS[kind]()
    samples = _random_samples(tokenizer, Grammar(tokenizer))
    assert [skipped for _, skipped in samples] == [0] * len(samples)
    assert sum(len(t.notes) for score, _ in samples for t in score.tracks) > 0
    # the same model without the grammar writes tokens MidiTok has to skip: the test can fail
    assert sum(skipped for _, skipped in _random_samples(tokenizer, None)) > 0


@pytest.mark.parametrize("kind", sorted(TOKENIZERS))
def test_a_learned_id_moves_the_state_as_its_base_tokens_do(kind, tmp_path):
    base = TOKENIZERS[kind]()
    tokenizer, pieces = _with_bpe(TOKENIZERS[kind](), tmp_path)
    merged, plain = Grammar(tokenizer), Grammar(base)
    ids = torch.tensor(pieces[0].tolist())
    encoded = encode_bpe(tokenizer, pieces[0]).tolist()
    assert len(encoded) < len(ids)
    runs = base_tokens(tokenizer)
    a, b = merged.start(1), plain.start(1)
    done = 0
    for token in encoded:  # after every learned id, both states agree, and so do their masks on base ids
        merged.update(a, torch.tensor([token]))
        plain.replay(b, ids[None, done : done + len(runs[token])])
        done += len(runs[token])
        assert all(torch.equal(_real(a[key]), _real(b[key])) for key in a)
        assert torch.equal(merged.mask(a)[:, : len(base)], plain.mask(b))
    assert done == len(ids)


def _real(table: torch.Tensor) -> torch.Tensor:
    """A state entry without the per-program tables' spare slot 129, where padding writes land."""
    return table[:, :129] if table.dim() == 3 else table


def test_a_piece_from_bos_opens_with_a_bar():
    tokenizer = TOKENIZERS["REMI"]()
    grammar = Grammar(tokenizer)
    mask = grammar.mask(grammar.start(1))[0]
    assert {tokenizer[int(i)] for i in mask.nonzero()} == {"Bar_None"}


def test_positions_never_move_backwards_within_a_bar():
    tokenizer = TOKENIZERS["REMI"]()
    grammar = Grammar(tokenizer)
    state = grammar.start(1)
    grammar.replay(state, torch.tensor([[tokenizer[t] for t in ("Bar_None", "TimeSig_4/4", "Position_8")]]))
    allowed = {tokenizer[int(i)] for i in grammar.mask(state)[0].nonzero()}
    assert "Position_9" not in allowed  # Position → Program or Tempo only
    note = ("Program_0", "Pitch_60", "Velocity_63", "Duration_1.0.8")
    grammar.replay(state, torch.tensor([[tokenizer[t] for t in note]]))
    allowed = {tokenizer[int(i)] for i in grammar.mask(state)[0].nonzero()}
    assert "Position_9" in allowed and "Position_8" not in allowed and "Position_3" not in allowed
    grammar.replay(state, torch.tensor([[tokenizer[t] for t in ("Program_0",)]]))
    allowed = {tokenizer[int(i)] for i in grammar.mask(state)[0].nonzero()}
    assert "Pitch_60" not in allowed and "Pitch_61" in allowed  # no note twice at one onset


def test_tokenizations_without_a_grammar_are_refused_in_one_line():
    tokenizer = miditok.CPWord(miditok.TokenizerConfig())
    with pytest.raises(ConfigError, match="generate.constrained"):
        Grammar(tokenizer)
