"""Learned loss weights by homoscedastic uncertainty (Kendall, Gal & Cipolla, CVPR 2018).

Each loss term L_i becomes exp(-s_i) L_i + s_i / 2, where s_i = log sigma_i^2 is learned with the model
(the classification form of the paper's eq. 10). At its optimum exp(-s_i) = 1 / (2 L_i): a term's weight
falls as its loss grows, so no term drowns the others. Only terms bounded below by 0 may be balanced
(a negative loss would drive its s to -inf).
"""

from __future__ import annotations

import torch
from torch import nn


class LossBalance(nn.Module):
    def __init__(self, terms: tuple[str, ...]):
        super().__init__()
        self.terms = terms
        self.log_vars = nn.Parameter(torch.zeros(len(terms)))

    def forward(self, losses: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """({term: exp(-s) L + s / 2} for the terms given, {"weight_<term>": exp(-s)} for the log).
        Callers scale a term further (a warm-up) by multiplying its balanced value, which also stops its
        s from drifting while the term is switched off."""
        balanced, weights = {}, {}
        for name, loss in losses.items():
            s = self.log_vars[self.terms.index(name)]
            balanced[name] = torch.exp(-s) * loss + 0.5 * s
            weights[f"weight_{name}"] = torch.exp(-s).detach()
        return balanced, weights
