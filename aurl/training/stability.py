"""Training stability: non-finite steps are skipped and counted, too many in a row send the run back to its
newest intact checkpoint with a lower LR, and gradient-norm spikes are flagged.

The trainer skips the optimizer step itself (see Trainer._train_step); this component decides what follows
and keeps the counts, which go into every train log line and the checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aurl.config import StabilityConfig
from aurl.errors import AurlError
from aurl.training.monitor import SpikeDetector


class TrainingError(AurlError):
    """Training cannot go on (e.g. non-finite steps with no checkpoint to return to)."""


class Stability:
    """Watches each step's loss and gradient norm.

    `rollback` returns the run to its newest intact checkpoint's weights and optimizer and names it, or
    returns None where there is none."""

    def __init__(self, cfg: StabilityConfig, rollback: Callable[[], Path | None], log: Callable[[str], None]):
        self.cfg, self.rollback, self.log = cfg, rollback, log
        self.spikes = SpikeDetector(cfg.spike_factor, cfg.spike_window)
        self.lr_scale = 1.0  # lowered on every return to a checkpoint
        self.bad_in_a_row = 0
        self.counters = {"skipped_steps": 0, "grad_spikes": 0, "recoveries": 0}

    def watch(self, step: int, loss: float, grad_norm: float, stepped: bool) -> None:
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.counters["skipped_steps"] += 1
            self.bad_in_a_row += 1
            self.log(f"warning: step {step}: non-finite loss or gradient; optimizer step skipped")
            if self.bad_in_a_row >= self.cfg.nan_patience:
                self._recover(step)
            return
        self.bad_in_a_row = 0
        if stepped and self.spikes(grad_norm):
            self.counters["grad_spikes"] += 1
            self.log(f"warning: step {step}: gradient norm {grad_norm:.3g} spiked over its running median")

    def _recover(self, step: int) -> None:
        path = self.rollback()
        if path is None:
            raise TrainingError(
                f"{self.bad_in_a_row} non-finite steps in a row at step {step} and no checkpoint to return to; "
                "lower train.lr or use train.precision fp32"
            )
        self.lr_scale *= self.cfg.lr_backoff
        self.bad_in_a_row = 0
        self.counters["recoveries"] += 1
        self.log(f"warning: reloaded {path.name} after non-finite steps; LR scaled to {self.lr_scale:g}x")

    def state_dict(self) -> dict[str, Any]:
        # The spike window too: a resumed run flags the spikes the uninterrupted one would.
        return {
            "lr_scale": self.lr_scale,
            "bad_in_a_row": self.bad_in_a_row,
            "counters": dict(self.counters),
            "norms": list(self.spikes.norms),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr_scale, self.bad_in_a_row = float(state["lr_scale"]), int(state["bad_in_a_row"])
        self.counters.update(state["counters"])
        self.spikes.norms.clear()
        self.spikes.norms.extend(state["norms"])
