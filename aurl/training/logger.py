"""Where training metrics go: metrics.jsonl (one JSON object per line), TensorBoard scalars and images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch.utils.tensorboard import SummaryWriter


class MetricsLogger:
    def __init__(self, run_dir: Path, purge_step: int | None = None):
        """Append to the run's logs; with purge_step (a resume), drop what was logged from that step on."""
        jsonl = run_dir / "metrics.jsonl"
        if purge_step is not None and jsonl.is_file():
            kept = [line for line in jsonl.read_text().splitlines(True) if json.loads(line)["step"] < purge_step]
            jsonl.write_text("".join(kept))
        # Open for the whole run, line-buffered so a crash loses no line; close() closes it.
        self.jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115
        self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge_step)

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        self.jsonl.write(json.dumps({"step": step, "split": split, **metrics}) + "\n")
        for name, value in metrics.items():
            self.tb.add_scalar(f"{split}/{name}", value, step)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """An (height, width, channels) image to TensorBoard's Images tab."""
        self.tb.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        self.jsonl.close()
        self.tb.close()
