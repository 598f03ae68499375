"""How likely a trained model finds held-out music: loss, perplexity and bits per note."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from aurl.data.dataset import IGNORE_INDEX, PreparedDataset, WindowDataset
from aurl.data.tokenize import tokenizer_hash
from aurl.errors import ConfigError
from aurl.training.run import load_trained


@torch.no_grad()
def likelihood(
    run_dir: str | Path, data_dir: str | Path, split: str = "valid", checkpoint: str = "best", batch: int = 8
) -> dict[str, float]:
    """Negative log-likelihood of a split of a prepared dataset under a transformer run.

    The split's pieces are tiled into windows of data.seq_len tokens (as validation does). Bits per note
    divide the total by the notes of the source MIDI files, so tokenizations that spend more or fewer
    tokens per note compare fairly.
    """
    config, tokenizer, model = load_trained(run_dir, checkpoint)
    if config.model.mode != "transformer":
        raise ConfigError(f"{run_dir}: likelihood needs a transformer run; a {config.model.mode} run gives a bound")
    data = PreparedDataset(data_dir)
    if tokenizer_hash(tokenizer) != data.tokenizer_hash:
        raise ConfigError(
            f"{data_dir}: prepared with another tokenizer than {run_dir}; prepare it with the run's config"
        )
    pieces = data.pieces(split)
    notes = sum(e["notes"] for e in data.manifest["files"] if e["split"] == split)
    windows = WindowDataset(pieces, data.tables, config.data.seq_len, train=False)
    nll, tokens = 0.0, 0
    for first in range(0, len(windows), batch):
        items = [windows[i] for i in range(first, min(first + batch, len(windows)))]
        ids = torch.stack([it["input_ids"] for it in items])
        targets = torch.stack([it["targets"] for it in items])
        logits = model(ids)
        nll += float(
            F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        )
        tokens += int((targets != IGNORE_INDEX).sum())
    loss = nll / max(1, tokens)
    return {
        "split": split,
        "pieces": len(pieces),
        "tokens": tokens,
        "notes": notes,
        "loss_nats_per_token": loss,
        "perplexity": math.exp(loss),
        "bits_per_token": loss / math.log(2),
        "bits_per_note": nll / math.log(2) / max(1, notes),
    }
