"""Where training metrics go: metrics.jsonl (one JSON object per line), TensorBoard scalars and images.

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
from contextlib import suppress
from pathlib import Path

import numpy as np
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard.summary import image, scalar

from aurl.files import write_together, writing


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
