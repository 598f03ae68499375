"""Looking at MIDI: piano-roll PNG (matplotlib), one colour per track, with bar lines."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import symusic  # noqa: E402


def bar_starts(score: symusic.Score) -> list[int]:
    """Tick of every bar line, following the score's time-signature changes (4/4 when it has none)."""
    tpq, end = score.ticks_per_quarter, score.end()
    changes = sorted((ts.time, ts.numerator, ts.denominator) for ts in score.time_signatures) or [(0, 4, 4)]
    if changes[0][0] > 0:
        changes.insert(0, (0, 4, 4))
    bars: list[int] = []
    for i, (start, num, den) in enumerate(changes):
        stop = changes[i + 1][0] if i + 1 < len(changes) else end
        length = max(1, int(tpq * 4 * num / den))
        bars.extend(range(start, max(start + 1, stop), length))
    return bars


def piano_roll(score: symusic.Score, path: str | Path, title: str | None = None) -> Path:
    """Write a piano roll of `score` to a PNG file: time in quarter notes, pitch up, tracks in colours."""
    path = Path(path)
    tpq = score.ticks_per_quarter
    fig, ax = plt.subplots(figsize=(14, 5), dpi=100)
    colours = plt.get_cmap("tab10")
    for i, track in enumerate(t for t in score.tracks if t.notes):
        notes = track.notes.numpy()
        label = "drums" if track.is_drum else f"{track.name or 'track'} (program {track.program})"
        ax.barh(
            notes["pitch"],
            notes["duration"] / tpq,
            left=notes["time"] / tpq,
            height=0.8,
            color=colours(i % 10),
            label=label,
            linewidth=0,
        )
    for tick in bar_starts(score):
        ax.axvline(tick / tpq, color="0.85", linewidth=0.6, zorder=0)
    pitches = np.concatenate([t.notes.numpy()["pitch"] for t in score.tracks if t.notes] or [np.array([60])])
    ax.set_ylim(pitches.min() - 2, pitches.max() + 2)
    ax.set_xlim(0, max(1, score.end()) / tpq)
    ax.set_xlabel("quarter notes")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
