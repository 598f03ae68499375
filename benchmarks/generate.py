"""Generation speed: aurl's sampler with and without the KV cache, with and without grammar constraints,
with its cached steps compiled (aurl.generation.fast), beside Hugging Face `GPT2LMHeadModel.generate`
(with its cache) for a model of the same shape.

Both models: d_model 256, 6 layers, 4 heads, the REMI vocabulary of configs/demo.yaml (486 tokens), random
weights (speed does not depend on them), context 4,096. GPT-2 adds 1.0M learned position embeddings for
those 4,096 positions; aurl's rotary positions have none. Every row samples exactly N new tokens (EOS is
held off) with temperature 1, top-k 0, on this machine's threads. Rows without the cache whose estimated
time exceeds --max-seconds are not run, and say so. The compiled column is compiled before the table, once
per batch class (1 row, more), and says how long that took.

With --bpe DIR (a dataset prepared with tokenizer.bpe_vocab_size), a second table gives the grammar's
cost per token for that learned vocabulary, on a model of the same shape over it.

Run: .venv/bin/pip install -e ".[bench]"; .venv/bin/python benchmarks/generate.py [--bpe DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from aurl.config import GenerateConfig, ModelConfig, load_config
from aurl.data.tokenize import build_tokenizer, load_tokenizer
from aurl.generation.fast import FastDecoder
from aurl.generation.grammar import Grammar
from aurl.generation.sampler import sample
from aurl.models.transformer import Transformer

D_MODEL, LAYERS, HEADS, CONTEXT = 256, 6, 4, 4096


def aurl_model(vocab: int) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(d_model=D_MODEL, n_layers=LAYERS, n_heads=HEADS, context=CONTEXT), vocab).eval()


def hf_model(vocab: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=CONTEXT, n_embd=D_MODEL, n_layer=LAYERS, n_head=HEADS)
    return GPT2LMHeadModel(cfg).eval()


def run_aurl(model, bos: int, eos: int, n: int, batch: int, cache: bool, grammar: Grammar | None) -> float:
    settings = GenerateConfig(max_tokens=n, min_tokens=n, constrained=grammar is not None)
    prompt = torch.full((batch, 1), bos)
    start = time.perf_counter()
    out = sample(model, prompt, settings, grammar, eos, 0, generator=torch.Generator().manual_seed(0), use_cache=cache)
    seconds = time.perf_counter() - start
    assert out.shape[1] == n + 1, out.shape
    return batch * n / seconds


@torch.no_grad()
def run_hf(model, bos: int, n: int, batch: int) -> float:
    prompt = torch.full((batch, 1), bos)
    start = time.perf_counter()
    out = model.generate(
        prompt, do_sample=True, top_k=0, max_new_tokens=n, min_new_tokens=n, pad_token_id=0, use_cache=True
    )
    seconds = time.perf_counter() - start
    assert out.shape[1] == n + 1, out.shape
    return batch * n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-seconds", type=float, default=150, help="skip no-cache rows estimated longer")
    parser.add_argument("--bpe", metavar="DIR", help="a prepared dataset whose BPE tokenizer to measure too")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each cached row, interleaved; medians")
    args = parser.parse_args()
    tokenizer = build_tokenizer(load_config("configs/demo.yaml").tokenizer)
    vocab, bos, eos = len(tokenizer), tokenizer["BOS_None"], tokenizer["EOS_None"]
    grammar = Grammar(tokenizer)
    ours, theirs = aurl_model(vocab), hf_model(vocab)
    print(
        f"aurl {sum(p.numel() for p in ours.parameters()) / 1e6:.2f}M parameters, "
        f"GPT-2 {sum(p.numel() for p in theirs.parameters()) / 1e6:.2f}M; torch threads {torch.get_num_threads()}"
    )
    compiled = FastDecoder(ours)
    for batch in args.batches:  # compiles the step: once per batch class (1, more) for this shape
        start = time.perf_counter()
        compiled.warm_up(batch)
        ready = f"ready in {time.perf_counter() - start:.1f} s" if compiled.reason is None else compiled.reason
        print(f"compiled decoding for batch {batch}: {ready} (Inductor's disk cache shortens later starts)")
    run_aurl(ours, bos, eos, 16, 1, True, None)  # warm-up
    run_hf(theirs, bos, 16, 1)
    header = (
        "| tokens | batch | aurl cache | aurl no cache | cache / no cache | aurl cache + grammar | grammar cost "
        "| aurl compiled | compiled / cache | HF GPT-2 | aurl / HF | compiled / HF |"
    )
    print(header)
    print("|" + "|".join("---" for _ in range(header.count("|") - 1)) + "|")
    for n in args.lengths:
        for batch in args.batches:
            cached, constrained, fast, hf = medians(
                args.repeats,
                partial(run_aurl, ours, bos, eos, n, batch, True, None),
                partial(run_aurl, ours, bos, eos, n, batch, True, grammar),
                partial(run_aurl, compiled, bos, eos, n, batch, True, None),
                partial(run_hf, theirs, bos, n, batch),
            )
            # Without a cache step t reads t tokens: time grows with n^2. Estimate from a short run first.
            probe = min(n, 128)
            probe_rate = run_aurl(ours, bos, eos, probe, batch, False, None)
            estimate = batch * probe / probe_rate * (n / probe) ** 2
            uncached = run_aurl(ours, bos, eos, n, batch, False, None) if estimate <= args.max_seconds else None
            no_cache = f"{uncached:,.0f}" if uncached else f"not run (~{estimate:,.0f} s)"
            ratio = f"{cached / uncached:.1f}x" if uncached else "-"
            cost = f"{cached / constrained - 1:+.1%}"
            print(
                f"| {n} | {batch} | {cached:,.0f} | {no_cache} | {ratio} | {constrained:,.0f} | {cost} "
                f"| {fast:,.0f} | {fast / cached:.2f}x | {hf:,.0f} | {cached / hf:.2f}x | {fast / hf:.2f}x |",
                flush=True,
            )
    print(
        f"tokens/s = batch x new tokens / wall seconds (cached rows: median of {args.repeats}, interleaved); "
        "grammar cost = extra time per token with constraints on"
    )
    if args.bpe:
        bpe_grammar_cost(load_tokenizer(args.bpe), args.lengths, args.batches, args.repeats)


def medians(repeats: int, *runs: Callable[[], float]) -> list[float]:
    """The median of each measurement over `repeats` rounds, each round running all of them in turn, so a
    slow spell of this shared machine falls on every column alike."""
    rounds = [[run() for run in runs] for _ in range(repeats)]
    return [statistics.median(column) for column in zip(*rounds, strict=True)]


def bpe_grammar_cost(tokenizer, lengths: list[int], batches: list[int], repeats: int) -> None:
    vocab, bos, eos = len(tokenizer), tokenizer["BOS_None"], tokenizer["EOS_None"]
    model, grammar = aurl_model(vocab), Grammar(tokenizer)
    longest = int(grammar.run_length.max())
    print(f"\nBPE vocabulary of {vocab} ids ({len(tokenizer.vocab)} base; a learned id holds up to {longest})")
    print("| tokens | batch | aurl cache | aurl cache + grammar | grammar cost |")
    print("|---|---|---|---|---|")
    run_aurl(model, bos, eos, 16, 1, True, grammar)  # warm-up
    for n in lengths:
        for batch in batches:
            cached, constrained = medians(
                repeats,
                partial(run_aurl, model, bos, eos, n, batch, True, None),
                partial(run_aurl, model, bos, eos, n, batch, True, grammar),
            )
            cost = cached / constrained - 1
            print(f"| {n} | {batch} | {cached:,.0f} | {constrained:,.0f} | {cost:+.1%} |", flush=True)


if __name__ == "__main__":
    main()
