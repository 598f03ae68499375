"""Where training metrics go: metrics.jsonl (one JSON object per line), TensorBoard scalars and images, and
what a run shows as it goes (Reporter: aurl.progress's bar on a terminal, plain lines elsewhere).

The TensorBoard event file is written here, in this thread, with TensorBoard's own record format and
summaries: SummaryWriter writes from a thread of its own, so a full disk there printed that thread's
traceback and surfaced later, without the file's name. Every line and event is flushed as it is logged,
so a crash loses nothing and a failed write is a WriteError naming its file.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import numpy as np
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard.summary import image, scalar

from aurl.files import write_together, writing
from aurl.progress import Progress


class EventFile:
    """A TensorBoard event file in `folder`; with purge_step (a resume), TensorBoard hides the events an
    earlier file logged from that step on."""

    def __init__(self, folder: Path, purge_step: int | None = None):
        # TensorBoard reads a folder's event files in the order of their names, and a resume's purge applies
        # to the files read before it: the names sort by creation time, to the nanosecond (one second and
        # a counter had a resume at counter 10 read before the failed run's file at 9).
        name = f"events.out.tfevents.{time.time_ns():020d}.{socket.gethostname()}.{os.getpid()}"
        self.path = folder / name
        with writing(self.path):
            folder.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "ab")  # noqa: SIM115 (open for the run; close() closes it)
        self.records = RecordWriter(self.file)
        self.add(Event(wall_time=time.time(), step=purge_step or 0, file_version="brain.Event:2"))
        if purge_step is not None:
            self.add(Event(wall_time=time.time(), step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def add(self, event: Event) -> None:
        with writing(self.path):
            self.records.write(event.SerializeToString())
            self.file.flush()

    def summary(self, step: int, summaries: list[Summary]) -> None:
        values = [value for summary in summaries for value in summary.value]
        self.add(Event(wall_time=time.time(), step=step, summary=Summary(value=values)))


class MetricsLogger:
    def __init__(self, run_dir: Path, purge_step: int | None = None):
        """Append to the run's logs; with purge_step (a resume), drop what was logged from that step on."""
        self.path = run_dir / "metrics.jsonl"
        if purge_step is not None and self.path.is_file():
            # A line without its newline is one a failed write or a kill cut short: dropped too.
            lines = [line for line in self.path.read_text().splitlines(True) if line.endswith("\n")]
            kept = "".join(line for line in lines if json.loads(line)["step"] < purge_step)
            write_together({self.path: lambda tmp: tmp.write_text(kept)})
        with writing(self.path):
            self.jsonl = open(self.path, "a", buffering=1)  # noqa: SIM115 (line-buffered; close() closes it)
        self.tb = EventFile(run_dir / "tb", purge_step)

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        with writing(self.path):
            self.jsonl.write(json.dumps({"step": step, "split": split, **metrics}) + "\n")
        self.tb.summary(step, [scalar(f"{split}/{name}", value) for name, value in metrics.items()])

    def image(self, step: int, tag: str, picture: np.ndarray) -> None:
        """An (height, width, channels) image to TensorBoard's Images tab."""
        self.tb.summary(step, [image(tag, picture, dataformats="HWC")])

    def close(self) -> None:
        # Everything was flushed as it was logged: what is left after a failed write is not written again
        # (that would fail as well, and hide the first error).
        for file in (self.jsonl, self.tb.file):
            with suppress(OSError):
                file.close()


class Reporter:
    """What a training run shows and keeps as it goes: metrics.jsonl and TensorBoard (`main`: rank 0 alone),
    and the steps with the latest train figures as aurl.progress shows them (a bar on a terminal, else a
    plain line every 10% or 30 s; `progress=False`: plain lines). Leaving it as a context closes the
    progress and the files."""

    LINE = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "seq_len", "batch_size")

    def __init__(
        self,
        run_dir: Path,
        step: int,
        max_steps: int,
        main: bool,
        progress: bool,
        log: Callable[[str], None],
        spent: Callable[[], float] | None = None,
    ):
        self.logger = MetricsLogger(run_dir, purge_step=step + 1) if main else None
        brief = ("loss", "tokens_per_s")
        self.progress = Progress(max_steps, "train", "step", log, step, progress, brief=brief, spent=spent)
        self.log = log
        self.sums: dict[str, float] = {}  # of the steps taken since the last train log
        self.steps = 0
        self.pending = 0  # steps not yet counted in the progress: counted once their figures are known

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._advance()
        self.progress.close()
        if self.logger:
            self.logger.close()

    def _advance(self) -> None:
        if self.pending:
            self.progress.update(self.pending)
            self.pending = 0

    def step(self, metrics: dict[str, float] | None) -> None:
        """A step done: its loss and other metrics, or None for a skipped step (left out of the means)."""
        # Counted at the next step, or at once by train() if this step is logged: a line shows its own figures.
        self._advance()
        self.pending = 1
        if metrics is not None:
            self.steps += 1
            for k, v in metrics.items():
                self.sums[k] = self.sums.get(k, 0.0) + v

    def train(self, step: int, more: dict[str, float], final: bool = False) -> dict[str, float]:
        """Log the means of the steps taken since the last train log, with `more` (rates, LR, ...); the
        `final` log is shown at once (without a bar: a line before the last evaluation's)."""
        metrics = {"loss": 0.0, **{k: v / max(1, self.steps) for k, v in self.sums.items()}, **more}
        self.sums, self.steps = {}, 0
        if self.logger:
            self.logger.log(step, "train", metrics)
        self.progress.show({k: f"{metrics[k]:,.0f}" if k == "tokens_per_s" else f"{metrics[k]:.4g}" for k in self.LINE})
        self._advance()
        if final:
            self.progress.flush()
        return metrics

    def valid(self, step: int, valid: dict[str, float], when: str) -> None:
        if self.logger:
            self.logger.log(step, "valid", valid)
        shown = {k: v for k, v in valid.items() if "/" not in k}  # not every latent dimension
        self.log(f"{when}: " + "  ".join(f"valid {k} {v:.4f}" for k, v in shown.items()))

    def samples(self, step: int, metrics: dict[str, float], images: dict[str, np.ndarray]) -> None:
        if self.logger:
            self.logger.log(step, "samples", metrics)
            for tag, picture in images.items():
                self.logger.image(step, f"samples/{tag}", picture)
