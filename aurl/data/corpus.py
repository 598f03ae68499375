"""Where MIDI comes from: folders, globs and built-in corpora, and the deterministic split of each file."""

from __future__ import annotations

import glob
import hashlib
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import symusic

from aurl.errors import DataError

MIDI_SUFFIXES = {".mid", ".midi"}
BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class SourceFile:
    path: Path  # where to read it
    name: str  # path relative to the source root: the stable key for splits and incremental prepare


def cache_dir() -> Path:
    return Path(os.environ.get("AURL_CACHE", Path.home() / ".cache" / "aurl")).expanduser()


def split_of(name: str, valid_fraction: float, test_fraction: float) -> str:
    """train/valid/test from a hash of the file's relative path: adding files never moves old ones."""
    u = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


def resolve_source(source: str, workers: int = 1, log: Callable[[str], None] = print) -> list[SourceFile]:
    """MIDI files of a folder (recursive), a glob, or `builtin:NAME` (see aurl.data.builtin), sorted by name."""
    if source.startswith(BUILTIN_PREFIX):
        from aurl.data.builtin import builtin_files  # it builds on this module: imported here, not in a cycle

        found = builtin_files(source.removeprefix(BUILTIN_PREFIX), workers, log)
    else:
        found = _local_files(source)
    if not found:
        raise DataError(f"{source}: no .mid or .midi files found")
    return sorted(found, key=lambda f: f.name)


def _local_files(source: str) -> list[SourceFile]:
    if Path(source).is_dir():
        root = Path(source)
        files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES]
    elif glob.has_magic(source):
        fixed = itertools.takewhile(lambda part: not glob.has_magic(part), Path(source).parts)
        root = Path(*fixed)
        files = [Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file()]
    elif Path(source).is_file():
        root, files = Path(source).parent, [Path(source)]
    else:
        raise DataError(f"{source}: no such folder, file or glob; pass a MIDI folder or builtin:NAME (aurl corpora)")
    return [SourceFile(p, p.relative_to(root).as_posix()) for p in files]


def read_score(path: str | Path) -> symusic.Score:
    """A user's MIDI file as a Score, or a DataError naming the file and what is wrong with it."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such MIDI file")
    try:
        return symusic.Score(str(path))
    except Exception as err:  # symusic raises several types for unreadable files
        raise DataError(f"{path}: not a readable MIDI file ({str(err).splitlines()[0][:100]})") from None
