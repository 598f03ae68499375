"""Samples while training: every train.sample_interval steps, a few short pieces from the current
weights are written to RUN/samples/step_N/ and measured, so a user watches the music improve, not only
the loss fall (TensorBoard: the `samples/` scalars and the piano roll under Images)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image
import numpy as np
import symusic
import torch
from torch import nn

from aurl.config import Config
from aurl.data.tokenize import build_tokenizer, load_tokenizer
from aurl.evaluation.features import SCALAR_FEATURES, piece_features
from aurl.generation.generate import grammar_for, piece_take, sample_pieces
from aurl.generation.takes import write_takes
from aurl.modes import MODES


class TrainingSamples:
    """The trainer's sample hook: (step, model) → (mean features of the pieces, their first piano roll)."""

    def __init__(self, config: Config, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.mode = MODES[config.model.mode]
        self.settings = config.generate.model_copy(
            update={"num": config.train.sample_count, "max_tokens": config.train.sample_tokens}
        )
        if self.settings.constrained:  # a tokenization without a grammar fails now, not after training
            grammar_for(build_tokenizer(config.tokenizer))
        self.tokenizer, self.grammar = None, None

    def __call__(self, step: int, model: nn.Module) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        if self.tokenizer is None:  # the run's own (with BPE, learned from the data): written before step 1
            self.tokenizer = load_tokenizer(self.run_dir)
            self.grammar = grammar_for(self.tokenizer) if self.settings.constrained else None
        device = next(model.parameters()).device
        generator = torch.Generator(device).manual_seed(self.settings.seed)  # the same draws at every step
        z = self.mode.prior(model, self.settings.num, generator, 1.0)
        grammar = self.grammar.to(device) if self.grammar is not None else None
        opening = [self.tokenizer["BOS_None"], *self.mode.opening(self.tokenizer)]
        rows = sample_pieces(model, self.mode, self.tokenizer, self.settings, grammar, generator, opening, z)
        out = self.run_dir / "samples" / f"step_{step}"
        takes = [piece_take(self.tokenizer, row) for row in rows]
        samples = write_takes(takes, out, f"step {step}", None)
        features = [piece_features(symusic.Score(str(s.midi))) for s in samples]
        metrics = {name: _mean([f[name] for f in features]) for name in SCALAR_FEATURES}
        metrics["notes"] = _mean([s.notes for s in samples])
        metrics["skipped_tokens"] = _mean([s.skipped_tokens for s in samples])
        roll = (matplotlib.image.imread(samples[0].png)[..., :3] * 255).astype(np.uint8)
        return metrics, {"piano_roll": roll}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan
