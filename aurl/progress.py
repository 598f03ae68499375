"""Progress as a long task goes (prepare's files, training's steps): one decision, made here, between a
progress bar and plain lines.

Where stderr is a terminal, a tqdm bar redraws itself in place. Anywhere else (a file, a pipe, CI) those
redraws are carriage returns that pile up into lines thousands of characters long, so there the same
figures come as one plain line every 10% of the total or every 30 s, whichever comes first, and once more
at the end (`flush`, `close`) if the last line did not show it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from tqdm import tqdm

PARTS = 10  # a line each time another tenth of the total is done ...
EVERY_SECONDS = 30.0  # ... or this long after the last line, whichever comes first


def draws_bar(progress: bool = True, stream: TextIO | None = None) -> bool:
    """Whether progress is drawn as a bar: asked for (`progress`) and stderr (or `stream`) is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return progress and isatty is not None and isatty()


def message_writer(progress: bool, log: Callable[[str], None], stream: TextIO | None = None) -> Callable[[str], None]:
    """Where other messages go while progress is shown: above the bar (tqdm.write) when one is drawn, else
    `log`, between the plain lines."""
    return tqdm.write if draws_bar(progress, stream) else log


class Progress:
    """`total` units of work (`unit`: file, step) from `initial`: a bar when draws_bar() says so, else a line
    through `log` at each tenth (PARTS) or EVERY_SECONDS. `show(figures)` sets the figures that follow the count
    (loss, tokens/s, ...): the bar shows those named in `brief` (it has one line of a terminal), a plain
    line all of them. `progress=False` keeps the plain lines (a log without a bar). `spent` (training under a
    time budget) gives the share of the budget used: the work is as far along as the larger of the two
    shares, and the time left is whichever of the two runs out first."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str,
        log: Callable[[str], None] = print,
        initial: int = 0,
        progress: bool = True,
        brief: Sequence[str] = (),
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        spent: Callable[[], float] | None = None,
    ):
        self.total, self.desc, self.unit, self.log, self.brief, self.clock = total, desc, unit, log, brief, clock
        self.n = self.shown = self.start_n = initial
        self.figures: dict[str, str] = {}
        self.start = self.last = clock()
        self.spent = spent or (lambda: 0.0)
        self.start_spent = self.spent()
        self.shown_part = self._part()  # the tenth of the work the last line showed (a resume starts partway)
        self.bar = None
        if total and draws_bar(progress, stream):
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def show(self, figures: dict[str, str]) -> None:
        self.figures = dict(figures)
        if self.bar is not None:
            brief = {k: v for k, v in figures.items() if k in self.brief}
            if spent := self.spent():  # the bar counts steps; a time budget that ends first shows its own share
                brief["budget"] = f"{spent:.0%}"
            self.bar.set_postfix(brief, refresh=False)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = self.clock()
        # the end's line comes from flush(), once: a time budget spent shows 100% a step before training stops
        if self.shown_part < self._part() < PARTS or now - self.last >= EVERY_SECONDS:
            self._line(now)

    def flush(self) -> None:
        """Without a bar, a line now unless the last one showed this count (the end, however it comes)."""
        if self.bar is None and self.n != self.shown:
            self._line(self.clock())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.flush()

    def _done(self) -> float:
        return max(self.n / max(self.total, 1), self.spent())

    def _part(self) -> int:
        return int(self._done() * PARTS)

    def _line(self, now: float) -> None:
        self.shown, self.shown_part, self.last = self.n, self._part(), now
        elapsed = now - self.start
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        spent = self.spent()
        parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}s ({self._done():.0%})"]
        parts.append(f"{tqdm.format_interval(elapsed)} elapsed")
        if rate > 0:
            parts.append(f"{rate:.3g} {self.unit}s/s")
            left = [(self.total - self.n) / rate]
            if spent > self.start_spent:  # the budget's rest, at the pace it has been spent since the start
                left.append(elapsed * (1 - spent) / (spent - self.start_spent))
            if self.n < self.total and spent < 1:
                parts.append(f"~{tqdm.format_interval(min(left))} left")
        figures = " ".join(f"{k}={v}" for k, v in self.figures.items())
        self.log(", ".join(parts) + (f"; {figures}" if figures else ""))
