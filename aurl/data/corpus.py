"""Where music comes from: folders, globs and built-in corpora, the deterministic split of each file, and
reading one file, MIDI or a score in notation (aurl.data.scores): a Score, or the reason it is unusable
(unreadable bytes, no notes, impossible values, over the limits)."""

from __future__ import annotations

import glob
import hashlib
import itertools
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic

from aurl.data.programs import VOICES
from aurl.data.scores import SCORE_SUFFIXES, is_score, load_notation, tune_numbers
from aurl.errors import DataError

MIDI_SUFFIXES = (".mid", ".midi")
BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class SourceFile:
    path: Path  # where to read it
    name: str  # path relative to the source root: the stable key for splits and incremental prepare
    number: int | None = None  # the tune of an ABC file of several (named FILE/NNNN by its X: number)


def cache_dir() -> Path:
    return Path(os.environ.get("AURL_CACHE", Path.home() / ".cache" / "aurl")).expanduser()


def _position(name: str) -> float:
    """Where a file's relative path hashes to in [0, 1); the splits are bands of it: test, valid, train."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def split_of(name: str, valid_fraction: float, test_fraction: float) -> str:
    """train/valid/test from a hash of the file's relative path: adding files never moves old ones."""
    u = _position(name)
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


SPLITS = ("train", "valid", "test")
MIN_FILES_FOR_VALID = 3  # with fewer, every file is worth more in training than as a validation score


def place_splits(
    names: list[str], placed: dict[str, str], valid_fraction: float, test_fraction: float
) -> tuple[dict[str, str], list[str]]:
    """The split of each usable file, and a line for each file moved off its hash band (or for no validation).

    A file keeps the split an earlier prepare gave it (`placed`); a new one goes by split_of. Hash bands
    leave small folders lopsided (12 files: 10 train, 2 test, no valid), so an empty train split, and from
    MIN_FILES_FOR_VALID files an empty valid split (unless valid_fraction is 0), takes the new file nearest
    its band. A move never empties train (or valid), and a file from a split of two or more goes before one
    that would leave test empty.
    """
    splits = {name: placed.get(name) or split_of(name, valid_fraction, test_fraction) for name in names}
    bands = {
        "train": (test_fraction + valid_fraction, 1.0),
        "valid": (test_fraction, test_fraction + valid_fraction),
    }
    needed = ["train"] + (["valid"] if valid_fraction > 0 and len(names) >= MIN_FILES_FOR_VALID else [])
    notes = []
    for split in needed:
        counts = Counter(splits.values())
        movable = [n for n in names if n not in placed and not (splits[n] in needed and counts[splits[n]] == 1)]
        if counts[split] or not movable:
            continue
        name = min((counts[splits[n]] == 1, _distance(n, bands[split]), n) for n in movable)[2]
        notes.append(
            f"{split}: {name}, moved from {splits[name]} (its hash is nearest the {split} band), since the hash "
            f"split left {split} empty among the {len(names)} usable files"
        )
        splits[name] = split
    if names and "valid" not in splits.values():
        if valid_fraction == 0:
            why = "data.valid_fraction is 0"
        elif len(names) < MIN_FILES_FOR_VALID:
            why = f"{MIN_FILES_FOR_VALID} or more set one aside"
        else:
            why = "every file keeps the split an earlier prepare gave it"
        notes.append(f"valid: none of the {len(names)} usable files ({why}); training runs without evaluation")
    return splits, notes


def _distance(name: str, band: tuple[float, float]) -> float:
    u = _position(name)
    return max(band[0] - u, u - band[1], 0.0)


def resolve_source(source: str, workers: int = 1, log: Callable[[str], None] = print) -> list[SourceFile]:
    """MIDI and score files of a folder (recursive), a glob, or `builtin:NAME` (see aurl.data.builtin), sorted by
    name; an ABC file of several tunes gives one each."""
    if source.startswith(BUILTIN_PREFIX):
        from aurl.data.builtin import builtin_files  # it builds on this module: imported here, not in a cycle

        found = builtin_files(source.removeprefix(BUILTIN_PREFIX), workers, log)
    else:
        found = _local_files(source)
    if not found:
        raise DataError(f"{source}: no MIDI or score files found ({', '.join(MIDI_SUFFIXES + SCORE_SUFFIXES)})")
    return sorted(found, key=lambda f: f.name)


def _local_files(source: str) -> list[SourceFile]:
    if Path(source).is_dir():
        root = Path(source)
        files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES + SCORE_SUFFIXES]
    elif glob.has_magic(source):
        fixed = itertools.takewhile(lambda part: not glob.has_magic(part), Path(source).parts)
        root = Path(*fixed)
        files = [Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file()]
    elif Path(source).is_file():
        root, files = Path(source).parent, [Path(source)]
    else:
        raise DataError(f"{source}: no such folder, file or glob; pass a folder of MIDI or scores, or builtin:NAME")
    found = []
    for path in files:
        name, tunes = path.relative_to(root).as_posix(), tune_numbers(path)
        if len(tunes) > 1:
            found += [SourceFile(path, f"{name}/{number:04d}", number) for number in tunes]
        else:
            found.append(SourceFile(path, name))
    return found


# Limits on what one MIDI file may hold. The tokenizer writes tokens for every bar up to the last event, so
# one corrupt delta time (a note days in) in a 50-byte file would otherwise cost minutes and gigabytes
# instead of a rejection. Both are far above real music: 20,000 bars of 4/4 at 120 bpm last 11 hours, and a
# million notes (about 10 s of tokenizing) fill 7 MB of MIDI.
MAX_BARS = 20_000
MAX_NOTES = 1_000_000


def read_score(path: str | Path, number: int | None = None, voices: Sequence[int] = VOICES) -> symusic.Score:
    """A user's MIDI or score file as a Score, or a DataError naming the file and what is wrong with it.
    `number`: a tune of an ABC file of several; `voices`: the programs a score's voices take (a run's, top
    first; see aurl.data.scores)."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such {'score' if is_score(path) else 'MIDI'} file")
    score, reason, _ = load_file(path, number, voices)
    if score is None:
        raise DataError(f"{path}{'' if number is None else f' (tune {number})'}: {reason}")
    return score


def load_file(
    path: str | Path, number: int | None = None, voices: Sequence[int] = VOICES
) -> tuple[symusic.Score | None, str, Counter[str]]:
    """(the score, "", what of it aurl's tokens do not hold) for a MIDI or score file (by its suffix) aurl can
    use, else (None, why not in words, nothing)."""
    if not is_score(path):
        return (*load_midi(path), Counter())
    converted, reason = load_notation(path, number, voices)
    reason = reason or score_problem(converted.midi)
    return (None, reason, Counter()) if reason else (converted.midi, "", converted.dropped)


def load_midi(source: str | Path | bytes) -> tuple[symusic.Score | None, str]:
    """(the score, "") for a MIDI file (a path, or its bytes) aurl can use, else (None, why not in words)."""
    try:
        score = symusic.Score.from_midi(source) if isinstance(source, bytes) else symusic.Score(str(source))
    except Exception as err:  # symusic raises RuntimeError/ValueError/IndexError for bad bytes
        detail = str(err).splitlines()[0][:120] if str(err).strip() else type(err).__name__
        return None, f"not a readable MIDI file: {detail}"
    reason = score_problem(score)
    return (None, reason) if reason else (score, "")


def score_problem(score: symusic.Score) -> str:
    """Why a parsed score is unusable ("" when it is usable): values no real file holds, or over the limits."""
    if score.ticks_per_quarter < 1:
        return "invalid header: 0 ticks per quarter note"
    sigs = score.time_signatures.numpy()
    bad = (sigs["numerator"] == 0) | (sigs["denominator"] == 0)  # a denominator exponent over 7 wraps to 0
    if bad.any():
        i = int(bad.argmax())
        meter = f"{sigs['numerator'][i]}/{sigs['denominator'][i]}"
        return f"invalid time signature: {meter} at tick {sigs['time'][i]}"
    if score.start() < 0:  # delta times summed past 2^31 ticks wrap around
        return "invalid times: events before the start (an overflowing delta time)"
    notes = score.note_num()
    if notes > MAX_NOTES:
        return f"too many notes: {notes:,} over the limit of {MAX_NOTES:,}"
    bars = bar_count(score)
    if bars > MAX_BARS:
        return f"too long: {bars:,.0f} bars over the limit of {MAX_BARS:,}"
    return ""


def bar_count(score: symusic.Score) -> float:
    """Bars from tick 0 to the last event by the time signatures (4/4 before the first one)."""
    sigs = score.time_signatures.numpy()
    times = np.concatenate(([0], sigs["time"].astype(np.int64)))
    bar_quarters = np.concatenate(([4.0], 4.0 * sigs["numerator"] / sigs["denominator"]))
    order = np.argsort(times, kind="stable")  # at equal times the file's own signature comes last and wins
    times, bar_quarters = times[order], bar_quarters[order]
    spans = np.diff(np.append(np.minimum(times, score.end()), score.end())).clip(min=0)
    return float((spans / score.ticks_per_quarter / bar_quarters).sum())
