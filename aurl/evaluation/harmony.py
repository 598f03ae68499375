"""Voice-leading faults of four-part writing (soprano, alto, tenor, bass: the first four tracks).

The textbook rules a chorale harmonisation is marked by, counted per 100 notes:
- parallel fifths and octaves: two voices a perfect fifth (or an octave/unison) apart at one onset and
  again at the next onset where either moves, both having moved in the same direction;
- voice crossing: a lower voice sounding above the voice over it at an onset;
- range: a note outside its voice's usual range (S C4-G5, A G3-D5, T C3-G4, B E2-D4);
- spacing: more than an octave between soprano and alto, or alto and tenor, at an onset.
Each voice is read at every onset of the piece as the pitch it sounds then (a rest reads as silence,
which takes part in no rule).
"""

from __future__ import annotations

import numpy as np
import symusic

RANGES = ((60, 79), (55, 74), (48, 67), (40, 62))  # soprano, alto, tenor, bass (MIDI pitches)
FAULTS = ("parallel_fifths", "parallel_octaves", "crossing", "range", "spacing")


def voices_at_onsets(score: symusic.Score) -> np.ndarray:
    """(onsets, 4) the pitch each of the first four tracks sounds at every onset of the piece, -1 when
    it is silent (the highest pitch where a voice sounds two)."""
    tracks = [t for t in score.tracks if not t.is_drum][:4]
    onsets = np.unique(np.concatenate([t.notes.numpy()["time"] for t in tracks if len(t.notes)] or [[0]]))
    grid = np.full((len(onsets), 4), -1, dtype=np.int64)
    for v, track in enumerate(tracks):
        notes = track.notes.numpy()
        for start, length, pitch in zip(notes["time"], notes["duration"], notes["pitch"], strict=True):
            sounding = (onsets >= start) & (onsets < start + max(int(length), 1))
            grid[sounding, v] = np.maximum(grid[sounding, v], pitch)
    return grid


def voice_leading_faults(score: symusic.Score) -> dict[str, float]:
    """Counts of each fault, their total, the notes of the four voices, and faults per 100 notes."""
    grid = voices_at_onsets(score)
    notes = sum(len(t.notes) for t in [t for t in score.tracks if not t.is_drum][:4])
    counts = dict.fromkeys(FAULTS, 0)
    for upper in range(4):
        for lower in range(upper + 1, 4):
            a, b = grid[:, upper], grid[:, lower]
            both = np.flatnonzero((a >= 0) & (b >= 0))
            for i, j in zip(both[:-1], both[1:], strict=True):
                da, db = a[j] - a[i], b[j] - b[i]
                if da == 0 and db == 0 or np.sign(da) != np.sign(db):
                    continue  # nothing moved, or contrary/oblique motion
                before, after = (a[i] - b[i]) % 12, (a[j] - b[j]) % 12
                if before == after == 7:
                    counts["parallel_fifths"] += 1
                elif before == after == 0:
                    counts["parallel_octaves"] += 1
            counts["crossing"] += int(((a >= 0) & (b >= 0) & (b > a)).sum()) if lower == upper + 1 else 0
    for v, (low, high) in enumerate(RANGES):
        track = [t for t in score.tracks if not t.is_drum][v : v + 1]
        if track:
            pitch = track[0].notes.numpy()["pitch"]
            counts["range"] += int(((pitch < low) | (pitch > high)).sum())
    for upper in (0, 1):
        a, b = grid[:, upper], grid[:, upper + 1]
        counts["spacing"] += int(((a >= 0) & (b >= 0) & (a - b > 12)).sum())
    total = sum(counts.values())
    return {**counts, "total": total, "notes": notes, "per_100_notes": 100 * total / max(1, notes)}
