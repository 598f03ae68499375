"""aurl beside the usual do-it-yourself stack, trained the same seconds on the same chorales.

The peer: MidiTok REMI (programs in one stream, its defaults otherwise) and a Hugging Face GPT-2 of 4 layers,
192 wide, context 256, in a plain PyTorch loop (AdamW, batch 16, warmup then a cosine over the time budget,
bf16 autocast where the CPU has bf16 units, SDPA attention), on the train split of the chorales that
configs/demo.yaml prepared. aurl: configs/demo.yaml with train.max_minutes (the model sized for them, no
step limit). Both are scored on the valid split, tiled into windows of each one's training length: bits per
note of the source's notes (the same notes for both), so that tokenizations compare.

Needs the bench extra (`.venv/bin/pip install -e ".[bench]"`: transformers), which aurl itself does not.

Run: .venv/bin/python benchmarks/peer.py --data data/bach-chorales [--seconds 300 1200]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import miditok
import symusic
import torch
from machine import machine  # benchmarks/machine.py

from aurl.config import load_config
from aurl.data.corpus import cache_dir
from aurl.data.dataset import PreparedDataset
from aurl.evaluation.likelihood import likelihood
from aurl.training.run import train
from aurl.training.trainer import pick_precision

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
CONTEXT, BATCH, LR, WARMUP = 256, 16, 1e-3, 50


def streams(data: PreparedDataset, tokenizer: miditok.REMI, split: str) -> tuple[list[list[int]], int]:
    """Each file of the split as MidiTok token ids (BOS ... EOS), and the split's notes as aurl counted them."""
    folder = cache_dir() / data.manifest["source"].removeprefix("builtin:")
    files = [entry for entry in data.manifest["files"] if entry["split"] == split]
    bos, eos = tokenizer["BOS_None"], tokenizer["EOS_None"]
    ids = [[bos, *tokenizer.encode(symusic.Score(str(folder / entry["name"]))).ids, eos] for entry in files]
    return ids, sum(entry["notes"] for entry in files)


def peer(data: PreparedDataset, seconds: float) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = miditok.REMI(miditok.TokenizerConfig(use_programs=True))
    train_ids, _ = streams(data, tokenizer, "train")
    valid_ids, notes = streams(data, tokenizer, "valid")
    flat = torch.tensor([token for piece in train_ids for token in piece])
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=CONTEXT,
        n_embd=192,
        n_layer=4,
        n_head=4,
        bos_token_id=tokenizer["BOS_None"],
        eos_token_id=tokenizer["EOS_None"],
        attn_implementation="sdpa",
    )
    model = GPT2LMHeadModel(config)
    precision, _ = pick_precision("auto", torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    start, steps = time.perf_counter(), 0
    while (spent := time.perf_counter() - start) < seconds:
        lr = LR * min(1.0, (steps + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(1.0, spent / seconds)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        first = torch.randint(len(flat) - CONTEXT - 1, (BATCH,))
        batch = torch.stack([flat[i : i + CONTEXT + 1] for i in first.tolist()])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        steps += 1
    trained_seconds = time.perf_counter() - start
    model.eval()
    nats = 0.0
    with torch.no_grad():
        for piece in valid_ids:
            for first in range(0, len(piece) - 1, CONTEXT):
                window = torch.tensor([piece[first : first + CONTEXT + 1]])
                logits = model(input_ids=window[:, :-1]).logits.float()
                nats += float(torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="sum"))
    return {
        "what": f"MidiTok REMI + HF GPT-2, {model.num_parameters() / 1e6:.2f}M parameters, {precision}",
        "steps": steps,
        "tokens_per_s": steps * BATCH * CONTEXT / trained_seconds,
        "bits_per_note": nats / math.log(2) / notes,
        "tokens_per_note": sum(len(piece) for piece in valid_ids) / notes,
    }


def ours(data_dir: str, seconds: float, run: Path) -> dict:
    sets = [f"data.dataset={data_dir}", f"train.max_minutes={seconds / 60}", "train.max_steps=1000000"]
    metrics = train(load_config(DEMO, [*sets, "train.sample_interval=0"]), run, progress=False, log=lambda _: None)
    scored = likelihood(run, data_dir, "valid")
    chosen = load_config(run / "config.yaml")
    size = (
        f"{chosen.model.d_model}x{chosen.model.n_layers}, windows of {chosen.data.seq_len}, "
        f"{chosen.train.batch_tokens} tokens a step"
    )
    steps = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    return {
        "what": f"configs/demo.yaml sized for the budget ({size}), {metrics['parameters'] / 1e6:.2f}M parameters",
        "steps": steps,
        "tokens_per_s": steps * chosen.train.batch_tokens / seconds,
        "bits_per_note": scored["bits_per_note"],
        "tokens_per_note": scored["tokens"] / scored["notes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the Bach chorales prepared with configs/demo.yaml")
    parser.add_argument("--seconds", nargs="+", type=float, default=[300.0, 1200.0])
    args = parser.parse_args()
    data = PreparedDataset(args.data)
    print(f"## aurl beside MidiTok + HF GPT-2, the same seconds, the chorales' valid split\n{machine()}\n")
    print("| seconds | what | steps | tokens/s (about) | tokens/note | bits/note |\n|---|---|---|---|---|---|")
    for seconds in args.seconds:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [peer(data, seconds), ours(args.data, seconds, Path(tmp) / "run")]
        for row in rows:
            print(
                f"| {seconds:g} | {row['what']} | {row['steps']} | {row['tokens_per_s']:,.0f} | "
                f"{row['tokens_per_note']:.2f} | {row['bits_per_note']:.3f} |"
            )
        gain = 1 - rows[1]["bits_per_note"] / rows[0]["bits_per_note"]
        print(f"| {seconds:g} | aurl against the peer | | | | {gain:+.1%} fewer bits |")
    print("target: aurl's demo config at least 12% fewer bits per note than the peer at both budgets")


if __name__ == "__main__":
    main()
