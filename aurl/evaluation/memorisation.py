"""Does the model copy? Generated pieces against the training pieces, as note n-grams.

A piece becomes its notes in onset order (pitch order within a chord), each note the pair (pitch, steps
since the previous onset). For each generated piece: the longest run of such notes it shares with any
training piece, and the share of its 8-note n-grams found anywhere in the training set. N-grams are
compared by 64-bit hashes of their windows (numpy), so the whole training set is searched at once.
"""

from __future__ import annotations

import numpy as np

from aurl.evaluation.features import Notes

NGRAM = 8
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constants: a polynomial hash that wraps modulo 2^64


def note_sequence(notes: Notes) -> np.ndarray:
    """One int64 code per note: pitch and the steps since the previous onset."""
    gaps = np.diff(notes.time, prepend=notes.time[:1])
    return notes.pitch.astype(np.int64) + 128 * np.minimum(gaps, 10**6)


def ngram_hashes(seq: np.ndarray, n: int) -> np.ndarray:
    """A uint64 hash of every window of n codes (empty when the sequence is shorter)."""
    if len(seq) < n:
        return np.zeros(0, np.uint64)
    windows = np.lib.stride_tricks.sliding_window_view(seq.astype(np.uint64), n)
    powers = _MULT ** np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (windows * powers).sum(1, dtype=np.uint64) + np.uint64(n)


class TrainingIndex:
    """The training pieces' note sequences, with their n-gram hash sets built on demand."""

    def __init__(self, sequences: list[np.ndarray]):
        self.sequences = sequences
        self._sets: dict[int, np.ndarray] = {}

    def hashes(self, n: int) -> np.ndarray:
        if n not in self._sets:
            parts = [ngram_hashes(s, n) for s in self.sequences]
            self._sets[n] = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)
        return self._sets[n]

    def shares(self, seq: np.ndarray, n: int) -> bool:
        return bool(np.isin(ngram_hashes(seq, n), self.hashes(n)).any())

    def longest_shared_run(self, seq: np.ndarray) -> int:
        """The most consecutive notes of seq found in one run in some training piece (binary search on
        the run length: a shared run of k notes holds shared runs of every shorter length)."""
        low, high = 0, len(seq)
        while low < high:
            mid = (low + high + 1) // 2
            if self.shares(seq, mid):
                low = mid
            else:
                high = mid - 1
        return low

    def ngram_share(self, seq: np.ndarray, n: int = NGRAM) -> float:
        grams = ngram_hashes(seq, n)
        return float(np.isin(grams, self.hashes(n)).mean()) if len(grams) else 0.0
