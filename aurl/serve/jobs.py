"""The studio's jobs: one queue and one worker thread for every served model, decoding requests together.

A job is checked when it is posted (a bad option never reaches the queue) and holds its request's work
(aurl.generation.requests). Works with equal keys are batchable (pieces written from one prompt: from
nothing, or continuing one file): the worker takes every queued job of the same model and key, up to
`max_rows` rows, and samples them as one batch in which each job keeps its own settings and random
generator, so a job gets the takes it would get alone. Others (accompany, infill) run one job at a time.
Every sampled token passes the batch's hook, which counts progress, decodes the first take's notes a few
times a second for the page, and stops the rows of a cancelled job.

All of the server's torch work runs on the one worker thread, models loaded there too (`Worker.call`):
torch's CPU kernels run in parallel through OpenMP, and once a second thread has used OpenMP the process
holds more OpenMP threads than cores, which makes GNU OpenMP stop spinning between parallel regions: a
512-token piece then took 1.2-1.5 s instead of 0.37 s on a 2-core machine, eager or compiled.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import symusic
import torch

from aurl.errors import AurlError
from aurl.files import write_together
from aurl.generation.fast import FastDecoder
from aurl.generation.generate import Trained, Work
from aurl.generation.takes import Sample, write_takes
from aurl.notation import engraved, musicxml
from aurl.render import drawing, piano_roll, render_wav

log = logging.getLogger("aurl.serve")

PROGRESS_SECONDS = 0.25  # how often a running job's notes are decoded for the page, at most
PROGRESS_SHARE = 0.1  # of a batch's time spent on that at most: 32 watched takes cost ~60 ms a round
GATHER_SECONDS = 0.02  # a worker waits this long after a request for others arriving with it
GATHER_MAX_SECONDS = 0.2
FINISHED = ("done", "failed", "cancelled")
_ids = itertools.count(1)
T = TypeVar("T")


def version_name(k: int) -> str:
    """What the page calls a take's version k (aurl.generation.takes writes it as sample_I_sweep_K)."""
    return "first pass" if k == 0 else f"after sweep {k}"


@dataclass
class Job:
    model: str
    task: str
    work: Work
    root: Path  # the job's files go to root/<id>
    id: str = field(default_factory=lambda: f"j-{next(_ids)}")
    status: str = "queued"
    tokens: int = 0
    tokens_per_second: float = 0.0
    error: str | None = None
    takes: list[Sample] = field(default_factory=list)
    notes: dict | None = None  # the first take so far, for drawing (kept up while someone watches)
    batch: int = 0  # requests decoded together with it, itself included
    version: int = 0  # bumped on every change a client may want to see
    streams: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list)  # watching it
    cancelled: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0
    rendering: threading.Lock = field(default_factory=threading.Lock)

    @property
    def watchers(self) -> int:
        return len(self.streams)

    def changed(self) -> None:
        """A new version: the event streams on it wake now (from the worker's thread), so that a finished
        job's clients hear at once and send their next requests together."""
        self.version += 1
        for loop, event in list(self.streams):
            loop.call_soon_threadsafe(event.set)

    @property
    def folder(self) -> Path:
        return self.root / self.id

    @property
    def key(self) -> tuple | None:
        """Jobs with equal keys can be sampled in one batch; None: alone."""
        return None if self.work.key is None else (self.model, self.work.key)

    @property
    def rows(self) -> int:
        return self.work.rows

    def public(self) -> dict:
        """The job as the API shows it."""
        base = f"/api/jobs/{self.id}/takes"
        return {
            "id": self.id,
            "model": self.model,
            "task": self.task,
            "status": self.status,
            "tokens": self.tokens,
            "tokens_per_second": round(self.tokens_per_second, 1),
            "error": self.error,
            "batch": self.batch,
            "takes": [
                {
                    "index": i,
                    "tokens": s.tokens,
                    "notes": s.notes,
                    "pitches": s.pitches,
                    "skipped_tokens": s.skipped_tokens,
                    "midi": f"{base}/{i}.mid",
                    "wav": f"{base}/{i}.wav",
                    "png": f"{base}/{i}.png",
                    "notes_url": f"{base}/{i}.json",
                    "musicxml": f"{base}/{i}.musicxml",
                    "svg": f"{base}/{i}.svg",
                    "song": f"{base}/{i}/song",  # POST: the take as a new song
                    # as it was before each revision sweep (settings.keep_sweeps): files as the take's
                    "versions": [
                        {
                            "name": version_name(k),
                            "midi": f"{base}/{i}_sweep_{k}.mid",
                            "notes_url": f"{base}/{i}_sweep_{k}.json",
                        }
                        for k in range(len(s.versions))
                    ],
                }
                for i, s in enumerate(self.takes)
            ],
        }

    def file(self, index: int, kind: str, version: int | None = None) -> Path:
        """A take's file (or one of its versions before a sweep): mid, json, or wav, png, musicxml and svg (its
        score engraved), rendered on the first request."""
        take = self.takes[index] if version is None else self.takes[index].versions[version]
        path = take.midi.with_suffix(f".{kind}")
        with self.rendering:
            if kind == "wav" and take.wav is None:
                take.wav = render_wav(take.midi, path)
            elif kind in ("musicxml", "svg") and not path.is_file():
                xml = take.midi.with_suffix(".musicxml")
                if not xml.is_file():
                    musicxml(take.midi, xml, take.given)
                if kind == "svg":
                    engraved(take.midi, path, xml)
            elif kind == "png" and take.png is None:
                title = f"{self.model} {self.id} take {index}{'' if version is None else f', {version_name(version)}'}"
                score = symusic.Score(str(take.midi))
                write_together({path: lambda tmp: piano_roll(score, tmp, title, take.given)})
                take.png = path
        return path

    def progress(self, tokens: int, notes: dict | None = None) -> None:
        self.tokens = tokens
        self.tokens_per_second = tokens / max(1e-9, time.perf_counter() - self.started)
        if notes is not None:
            self.notes = notes
        self.changed()

    def finish(self, status: str, error: str | None = None) -> None:
        self.status, self.error = status, error
        self.changed()


class Worker:
    """The queue of every served model and the one thread that runs the server's torch work: the calls
    given to `call` first (loading a model, compiling its decoding step), then the jobs, oldest first."""

    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        self.models: dict[str, Trained] = {}
        self.calls: list[tuple[Callable[[], object], Future]] = []
        self.queue: list[Job] = []
        self.running: list[Job] = []
        self.stopping = False
        self.ready = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name="aurl-serve-worker", daemon=True)
        self.thread.start()

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run fn on the worker's thread before the next job; its result (or exception) in the future."""
        future: Future[T] = Future()
        with self.ready:
            self.calls.append((fn, future))
            self.ready.notify()
        return future

    def serve(self, name: str, trained: Trained) -> None:
        """Take jobs for `name`; its decoding step is compiled first (jobs meanwhile wait in the queue)."""
        self.models[name] = trained
        self.call(lambda: self._warm_up(name, trained))

    def submit(self, job: Job) -> None:
        with self.ready:
            self.queue.append(job)
            self.ready.notify()

    def cancel(self, job: Job) -> None:
        job.cancelled.set()
        with self.ready:
            if job in self.queue:  # not started: it ends here
                self.queue.remove(job)
                job.finish("cancelled")

    def stop(self, timeout: float = 120) -> None:
        """Cancel what is queued and running and wait for the thread to end: a process that exits while
        the thread is inside torch (compiling, decoding) aborts."""
        with self.ready:
            self.stopping = True
            for _, future in self.calls:
                future.cancel()
            self.calls.clear()
            for job in self.queue:
                job.finish("cancelled")
            self.queue.clear()
            self.ready.notify()
        for job in self.running:
            job.cancelled.set()
        self.thread.join(timeout)

    def _next_batch(self) -> list[Job]:
        """The next jobs to decode together; none when calls are waiting or the worker is stopping."""
        with self.ready:
            self.ready.wait_for(lambda: self.queue or self.calls or self.stopping)
            if self.stopping or self.calls:
                return []
        # Requests sent together (clients answered by one batch ask again) arrive some ms apart: gather
        # while they keep coming, for GATHER_SECONDS after the last one and GATHER_MAX_SECONDS in all.
        deadline, seen = time.monotonic() + GATHER_MAX_SECONDS, 0
        while len(self.queue) != seen and time.monotonic() < deadline:
            seen = len(self.queue)
            time.sleep(GATHER_SECONDS)
        with self.ready:
            if not self.queue:  # stopped, or the job cancelled, while gathering
                return []
            first = self.queue.pop(0)
            batch, rows = [first], first.rows
            if first.key is not None:
                for job in list(self.queue):
                    if job.key == first.key and rows + job.rows <= self.max_rows:
                        self.queue.remove(job)
                        batch.append(job)
                        rows += job.rows
        return batch

    @staticmethod
    def _warm_up(name: str, trained: Trained) -> None:
        """Compile the decoding step for one row and for several before the model's first request."""
        decoder = trained.decoder
        if isinstance(decoder, FastDecoder):
            start = time.perf_counter()
            if decoder.warm_up(1) and decoder.warm_up(2):
                log.info("%s: compiled decoding ready in %.1f s", name, time.perf_counter() - start)

    def _run_calls(self) -> None:
        with self.ready:
            calls, self.calls = self.calls, []
        for fn, future in calls:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as err:  # the caller gets it; the worker goes on
                    future.set_exception(err)

    def _loop(self) -> None:
        while not self.stopping:
            self._run_calls()
            batch = self.running = self._next_batch()
            if not batch:
                continue
            for job in batch:
                job.status, job.started, job.batch = "running", time.perf_counter(), len(batch)
                job.changed()
            try:
                self._write(batch)
            except AurlError as err:
                for job in batch:
                    job.finish("failed", str(err))
            except Exception as err:  # a failing request must not take the worker down
                log.error("job %s failed:\n%s", [j.id for j in batch], traceback.format_exc())
                for job in batch:
                    job.finish("failed", f"internal error: {type(err).__name__}: {err}")

    def _write(self, batch: list[Job]) -> None:
        pad = self.models[batch[0].model].tokenizer.pad_token_id
        spans, first = [], 0  # each job's rows of the batch (a job alone: every row, however many it samples)
        for job in batch:
            spans.append(slice(first, first + job.rows) if len(batch) > 1 else slice(None))
            first += job.rows
        counts = [0] * len(batch)
        last, every = [0.0], [PROGRESS_SECONDS]

        def on_step(seq: torch.Tensor) -> torch.Tensor | None:
            live = seq[:, -1] != pad  # rows that wrote a token this step
            for k, span in enumerate(spans):
                counts[k] += int(live[span].sum())
            now = time.perf_counter()
            if now - last[0] >= every[0]:
                for job, span, count in zip(batch, spans, counts, strict=True):
                    # decoding costs the batch time: only for a page that draws it
                    job.progress(count, _preview(job.work, seq[span][0, 1:].tolist()) if job.watchers else None)
                last[0] = time.perf_counter()
                every[0] = max(PROGRESS_SECONDS, (last[0] - now) / PROGRESS_SHARE)
            if not any(job.cancelled.is_set() for job in batch):
                return None
            stop = torch.zeros(seq.shape[0], dtype=torch.bool)
            for job, span in zip(batch, spans, strict=True):
                stop[span] = job.cancelled.is_set()
            return stop

        results = type(batch[0].work).together([job.work for job in batch], on_step)
        for job, takes, count in zip(batch, results, counts, strict=True):
            if job.cancelled.is_set():
                job.finish("cancelled")
                continue
            try:
                job.progress(count)
                job.takes = write_takes(takes, job.folder, f"{job.model} {job.id}", None, png=False)
                self._finish_takes(job)
            except AurlError as err:
                job.finish("failed", str(err))

    @staticmethod
    def _finish_takes(job: Job) -> None:
        """Each take's notes beside its MIDI file (for the page), then the job is done. Its WAV and piano
        roll are made when first asked for (Job.file), so decoding the next batch need not wait for them."""
        for sample in (s for take in job.takes for s in (take, *take.versions)):
            notes = json.dumps(drawing(symusic.Score(str(sample.midi)), sample.given))
            write_together({sample.midi.with_suffix(".json"): lambda tmp, notes=notes: tmp.write_text(notes)})
        job.finish("done")


def _preview(work: Work, ids: list[int]) -> dict | None:
    """The notes of a first take's tokens so far, or None where half-written tokens do not decode: a preview
    never fails its job."""
    try:
        return drawing(work.preview(ids))
    except Exception:
        return None


class Jobs:
    """Every job of the server, by id, with at most `keep` finished ones (older ones and their files go)."""

    def __init__(self, worker: Worker, keep: int = 256):
        self.worker, self.keep = worker, keep
        self.all: dict[str, Job] = {}
        self.lock = threading.Lock()

    def submit(self, job: Job) -> Job:
        with self.lock:
            self.all[job.id] = job
            finished = [j for j in self.all.values() if j.status in FINISHED]
            for old in finished[: max(0, len(finished) - self.keep)]:
                del self.all[old.id]
                shutil.rmtree(old.folder, ignore_errors=True)
        self.worker.submit(job)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.all.get(job_id)

    def cancel(self, job: Job) -> None:
        self.worker.cancel(job)
