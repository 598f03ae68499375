"""Where MIDI comes from: folders, globs and built-in corpora, and the deterministic split of each file."""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import symusic

from aurl.errors import DataError

MIDI_SUFFIXES = {".mid", ".midi"}
BUILTIN_PREFIX = "builtin:"
# One General MIDI program per chorale voice, so that voices stay separate tracks through tokenization.
VOICE_PROGRAMS = {"soprano": 40, "alto": 41, "tenor": 42, "bass": 43}  # violin, viola, cello, contrabass


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
    """MIDI files of a folder (recursive), a glob, or `builtin:NAME`, sorted by name."""
    if source.startswith(BUILTIN_PREFIX):
        name = source.removeprefix(BUILTIN_PREFIX)
        if name not in BUILTINS:
            raise DataError(f"{source}: unknown built-in corpus; available: {', '.join(BUILTINS)}")
        root = BUILTINS[name](workers, log)
        files = [p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES]
    elif Path(source).is_dir():
        root = Path(source)
        files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES]
    elif glob.has_magic(source):
        fixed = itertools.takewhile(lambda part: not glob.has_magic(part), Path(source).parts)
        root = Path(*fixed)
        files = [Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file()]
    elif Path(source).is_file():
        root, files = Path(source).parent, [Path(source)]
    else:
        raise DataError(f"{source}: no such folder, file or glob; pass a MIDI folder or builtin:bach-chorales")
    found = sorted((SourceFile(p, p.relative_to(root).as_posix()) for p in files), key=lambda f: f.name)
    if not found:
        raise DataError(f"{source}: no .mid or .midi files found")
    return found


def _convert_chorale(job: tuple[str, str]) -> tuple[str, str | None]:
    """Parse one music21 chorale and write it as MIDI with one program per voice; returns an error or None."""
    name, out = job
    try:
        import symusic
        from music21 import corpus

        corpus.parse(name).write("midi", fp=out)
        score = symusic.Score(out)
        tracks = [t for t in score.tracks if t.notes]
        for track in tracks:
            track.program = VOICE_PROGRAMS.get(track.name.strip().lower(), 0)
        score.tracks = tracks
        score.dump_midi(out)
        return name, None
    except Exception as err:  # music21 raises many types for the odd malformed score
        Path(out).unlink(missing_ok=True)
        return name, f"{type(err).__name__}: {err}"


def bach_chorales(workers: int = 1, log: Callable[[str], None] = print) -> Path:
    """The ~370 Bach chorales bundled with music21, converted to MIDI once under AURL_CACHE."""
    root = cache_dir() / "bach-chorales"
    if (root / "complete.json").is_file():
        return root
    from music21.corpus import chorales

    # Riemenschneider's 371 numbers name 350 distinct chorales: some appear twice.
    names = sorted(set(chorales.Iterator(returnType="filename")))
    log(f"Converting {len(names)} Bach chorales from music21 to MIDI in {root} (once) ...")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bach-chorales-", dir=root.parent))
    jobs = [(name, str(tmp / (name.replace("/", "_") + ".mid"))) for name in names]
    with ProcessPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(_convert_chorale, jobs, chunksize=8))
    failed = {name: err for name, err in results if err}
    for name, err in failed.items():
        log(f"  skipped {name}: {err}")
    (tmp / "complete.json").write_text(json.dumps({"converted": len(names) - len(failed), "failed": failed}))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)  # atomic: a crash never leaves a half-built corpus that looks complete
    return root


BUILTINS: dict[str, Callable[[int, Callable[[str], None]], Path]] = {"bach-chorales": bach_chorales}


def read_score(path: str | Path) -> symusic.Score:
    """A user's MIDI file as a Score, or a DataError naming the file and what is wrong with it."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such MIDI file")
    try:
        return symusic.Score(str(path))
    except Exception as err:  # symusic raises several types for unreadable files
        raise DataError(f"{path}: not a readable MIDI file ({str(err).splitlines()[0][:100]})") from None
