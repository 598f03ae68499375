"""One objective per model mode: turns a batch into the loss to minimise and the metrics to log."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aurl.data.dataset import IGNORE_INDEX


class LanguageModelObjective:
    """Next-token cross-entropy over unpadded positions (mode: transformer)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.model(batch["input_ids"])
        targets = batch["targets"]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        valid = targets != IGNORE_INDEX
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == targets)[valid].float().mean()
        return {"loss": loss, "accuracy": accuracy}


def build_objective(mode: str, model: nn.Module) -> LanguageModelObjective:
    if mode == "transformer":
        return LanguageModelObjective(model)
    raise ValueError(f"model.mode {mode!r} has no objective")
