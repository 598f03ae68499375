"""How likely a trained model finds held-out music: loss, perplexity and bits per note.

A transformer gives the exact negative log-likelihood. A VAE gives an upper bound, the negative ELBO
(Kingma & Welling 2014): reconstruction cross-entropy with z drawn from the encoder's posterior, plus the
whole KL to the prior (no beta, no free bits), per bar-aligned segment as the model was trained; a
segment longer than data.seq_len is coded as several, so every token is counted.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import default_collate

from aurl.data.dataset import IGNORE_INDEX, PreparedDataset
from aurl.data.layout import Laid
from aurl.data.tokenize import tokenizer_hash
from aurl.errors import ConfigError
from aurl.modes import MODES
from aurl.training.run import load_trained


@torch.no_grad()
def likelihood(
    run_dir: str | Path, data_dir: str | Path, split: str = "valid", checkpoint: str = "best", batch: int = 8
) -> dict[str, float | int | str | bool]:
    """Negative log-likelihood (a VAE: its upper bound) of a split of a prepared dataset under a run.

    A transformer reads the split's pieces tiled into windows of data.seq_len tokens (as validation
    does); a VAE reads them as validation segments of data.segment_bars bars. Bits per note divide the
    total by the notes of the source MIDI files, so tokenizations that spend more or fewer tokens per
    note compare fairly.
    """
    config, tokenizer, model = load_trained(run_dir, checkpoint)
    data = PreparedDataset(data_dir)
    if tokenizer_hash(tokenizer) != data.tokenizer_hash:
        raise ConfigError(
            f"{data_dir}: prepared with another tokenizer than {run_dir}; prepare it with the run's config"
        )
    mode = MODES[config.model.mode]
    latent = mode.latent
    items = mode.evaluation_items(config, data, split)
    notes = sum(e["notes"] for e in data.manifest["files"] if e["split"] == split)
    generator = torch.Generator().manual_seed(0)  # a VAE's one posterior sample per segment, the same every time
    nll, kl, tokens = 0.0, 0.0, 0
    for first in range(0, len(items), batch):
        chunk = default_collate([items[i] for i in range(first, min(first + batch, len(items)))])
        chunk_nll, chunk_kl = mode.negative_log_likelihood(model, chunk, generator)
        nll, kl = nll + chunk_nll, kl + chunk_kl
        tokens += int((chunk["targets"] != IGNORE_INDEX).sum())
    total = nll + kl
    loss = total / max(1, tokens)
    out = {
        "split": split,
        "pieces": len(data.pieces(split)),
        "tokens": tokens,
        "notes": notes,
        "bound": latent,
        "loss_nats_per_token": loss,
        "perplexity": math.exp(loss),
        "bits_per_token": loss / math.log(2),
        "bits_per_note": total / math.log(2) / max(1, notes),
    }
    if latent:
        out.update(kl_nats_per_segment=kl / len(items), segments=len(items))
    return out


@torch.inference_mode()
def written_nll(model: torch.nn.Module, bos: int, laid: Laid) -> float:
    """Summed negative log-likelihood (nats) of the tokens a laid-out window or request writes after BOS: its
    given ones (the task, the bars around a gap, the given tracks) are read, not scored."""
    ids = [bos, *laid.ids]
    logits = model(torch.tensor([ids]))[0, :-1].float().log_softmax(-1)
    picked = -logits[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    return float(picked[torch.tensor([not given for given in laid.given])].sum())
