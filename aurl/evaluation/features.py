"""Musical features of one piece.

Where MusPy defines a metric, it is computed as MusPy computes it (muspy/metrics/metrics.py, v0.5):
on time steps of RESOLUTION per quarter note, drum tracks ignored for pitch metrics, entropies in bits,
polyphony over the steps where a pitch sounds, polyphony rate counting steps with more than 2 pitches,
scale consistency as the best in-scale rate over the 24 major and minor scales, empty beats as beats no
note (drums included) covers, and groove consistency from the onset vectors of neighbouring bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import symusic

RESOLUTION = 24  # time steps per quarter note: MusPy's default resolution
IOI_BINS = np.array([0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, np.inf])  # quarter notes
LENGTH_BINS = np.array([0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, np.inf])
MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)
SCALES = np.stack([np.roll(s, root) for s in (MAJOR, MINOR) for root in range(12)])  # (24, 12)

SCALAR_FEATURES = (
    "pitch_count",
    "pitch_class_entropy",
    "pitch_entropy",
    "pitch_range",
    "polyphony",
    "polyphony_rate",
    "notes_per_bar",
    "scale_consistency",
    "groove_consistency",
    "empty_beat_rate",
    "longest_repeated_bars",
)
HISTOGRAM_FEATURES = ("pitch_class_histogram", "ioi_histogram", "note_length_histogram")


@dataclass(frozen=True)
class Notes:
    """All notes of a piece as arrays on the RESOLUTION grid, and its bar length in steps."""

    time: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    drum: np.ndarray  # bool
    bar: int

    @classmethod
    def of(cls, score: symusic.Score) -> Notes:
        grid = score.resample(RESOLUTION, min_dur=1)
        parts = [(t.notes.numpy(), t.is_drum) for t in grid.tracks if len(t.notes)]
        time = np.concatenate([n["time"] for n, _ in parts]) if parts else np.zeros(0, np.int64)
        duration = np.concatenate([n["duration"] for n, _ in parts]) if parts else np.zeros(0, np.int64)
        pitch = np.concatenate([n["pitch"] for n, _ in parts]) if parts else np.zeros(0, np.int64)
        drum = np.concatenate([np.full(len(n["time"]), d) for n, d in parts]) if parts else np.zeros(0, bool)
        sig = grid.time_signatures[0] if len(grid.time_signatures) else None
        numerator, denominator = (sig.numerator, sig.denominator) if sig is not None else (4, 4)
        bar = RESOLUTION * 4 * numerator // denominator
        order = np.lexsort((pitch, time))
        return cls(
            time[order].astype(np.int64), (time + duration)[order].astype(np.int64), pitch[order], drum[order], bar
        )

    @property
    def length(self) -> int:
        return int(self.end.max()) if len(self.end) else 0


def _entropy(counts: np.ndarray) -> float:
    total = counts.sum()
    if total < 1:
        return math.nan
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def _histogram(values: np.ndarray, bins: np.ndarray) -> np.ndarray:
    counts = np.histogram(values, bins=bins)[0].astype(float)
    return counts / counts.sum() if counts.sum() else counts


def pianoroll(notes: Notes) -> np.ndarray:
    """(steps, 128) bool: which pitched (non-drum) notes sound at each step."""
    roll = np.zeros((notes.length, 128), bool)
    for t, e, p in zip(notes.time[~notes.drum], notes.end[~notes.drum], notes.pitch[~notes.drum], strict=True):
        roll[t:e, p] = True
    return roll


def polyphony(notes: Notes) -> tuple[float, float]:
    """(MusPy polyphony, MusPy polyphony_rate with threshold 2)."""
    sounding = pianoroll(notes).sum(1)
    busy = np.count_nonzero(sounding > 0)
    mean = float(sounding.sum() / busy) if busy else math.nan
    rate = float(np.count_nonzero(sounding > 2) / len(sounding)) if len(sounding) else math.nan
    return mean, rate


def empty_beat_rate(notes: Notes) -> float:
    if notes.length < 1:
        return math.nan
    covered = np.zeros(notes.length // RESOLUTION + 1, bool)
    for t, e in zip(notes.time // RESOLUTION, notes.end // RESOLUTION, strict=True):
        covered[t : e + 1] = True
    return float(1 - covered.mean())


def groove_consistency(notes: Notes) -> float:
    n_bars = notes.length // notes.bar + 1
    if n_bars < 2:
        return math.nan
    onsets = np.zeros((n_bars, notes.bar), bool)
    bar, position = np.divmod(notes.time, notes.bar)
    onsets[bar, position] = True
    return float(1 - np.count_nonzero(onsets[:-1] != onsets[1:]) / (notes.bar * (n_bars - 1)))


def longest_repeated_bars(notes: Notes) -> int:
    """The longest run of consecutive bars (same onsets within the bar and pitches) that occurs twice."""
    n_bars = notes.length // notes.bar + 1 if notes.length else 0
    bar, position = np.divmod(notes.time, notes.bar)
    content = [
        tuple(zip(position[bar == b].tolist(), notes.pitch[bar == b].tolist(), strict=True)) for b in range(n_bars)
    ]
    ids = {c: i for i, c in enumerate(dict.fromkeys(content))}
    seq = [ids[c] if c else -1 - b for b, c in enumerate(content)]  # empty bars never match
    best = 0
    for k in range(1, n_bars):  # grows while some k-bar run still repeats
        runs = [tuple(seq[i : i + k]) for i in range(n_bars - k + 1)]
        if len(set(runs)) == len(runs):
            break
        best = k
    return best


def meter_changes(score: symusic.Score) -> int:
    """How often the time signature changes (a bar that names the meter it already has is no change)."""
    sigs = [(ts.numerator, ts.denominator) for ts in score.time_signatures]
    return sum(a != b for a, b in zip(sigs, sigs[1:], strict=False))


def piece_features(score: symusic.Score) -> dict[str, float | list[float]]:
    """Every feature of one piece: scalars and normalised histograms (lists)."""
    notes = Notes.of(score)
    pitched = notes.pitch[~notes.drum]
    class_counts = np.bincount(pitched % 12, minlength=12).astype(float)
    onsets = np.unique(notes.time)
    poly, poly_rate = polyphony(notes)
    in_scale = (SCALES[:, pitched % 12].sum(1) / len(pitched)) if len(pitched) else None
    n_bars = max(1, math.ceil(notes.length / notes.bar))
    return {
        "notes": float(len(notes.time)),
        "pitch_count": float(len(np.unique(pitched))),
        "pitch_class_entropy": _entropy(class_counts),
        "pitch_entropy": _entropy(np.bincount(pitched, minlength=128).astype(float)),
        "pitch_range": float(pitched.max() - pitched.min()) if len(pitched) else 0.0,
        "polyphony": poly,
        "polyphony_rate": poly_rate,
        "notes_per_bar": len(notes.time) / n_bars,
        "scale_consistency": float(in_scale.max()) if in_scale is not None else math.nan,
        "groove_consistency": groove_consistency(notes),
        "empty_beat_rate": empty_beat_rate(notes),
        "longest_repeated_bars": float(longest_repeated_bars(notes)),
        "meter_changes": float(meter_changes(score)),  # reported beside the features, not compared as one
        "pitch_class_histogram": (class_counts / max(1.0, class_counts.sum())).tolist(),
        "ioi_histogram": _histogram(np.diff(onsets) / RESOLUTION, IOI_BINS).tolist(),
        "note_length_histogram": _histogram((notes.end - notes.time) / RESOLUTION, LENGTH_BINS).tolist(),
    }
