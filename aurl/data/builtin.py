"""The built-in corpora: music that music21 ships, converted once to MIDI under AURL_CACHE.

One `CorpusSpec` per corpus says how to list its pieces from music21's files (without parsing a score),
how to name each piece's MIDI file and which General MIDI program each part gets; the converter of
aurl.data.scores, which reads a user's scores too, serves them all. `builtin:music21` is the union of every
corpus but the Bach chorales (a base model pretrains on it and is measured on them); it reads its members'
folders rather than converting again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from aurl.data.corpus import SourceFile, cache_dir
from aurl.data.programs import VOICE_PROGRAMS, Track, by_instrument_name, by_voice
from aurl.data.scores import SCORE_SUFFIXES, parse_score, to_midi, tune_numbers
from aurl.errors import DataError

# The converter's version, recorded in each corpus's complete.json: a corpus folder an older one wrote (1: one
# without it) is converted again on first use. Bump it when the MIDI files the converter writes change.
# 2: a pickup is written as the end of a full first bar, so that the file's bar lines are the score's.
CONVERTER = 2
# A piece music21 takes longer than this to read and convert is skipped (and listed as failed): two O'Neill
# tunes (1046 and 1047 of 1031-1115.abc) kept a conversion busy for minutes.
PIECE_SECONDS = 120


@dataclass(frozen=True)
class Piece:
    source: str  # what aurl.data.scores.parse_score reads: a file path or a name in music21's corpus
    number: int | None  # the tune's X: number in an ABC file of many tunes; None for a file of one piece
    name: str  # the MIDI file's path in the corpus folder: the stable key for splits


@dataclass(frozen=True)
class CorpusInfo:
    """One row of `aurl corpora`."""

    name: str  # builtin:NAME
    description: str
    pieces: int
    parts: str
    cache: Path | None  # where it is converted, or None before its first use


def _music21_root() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


def _files(*folders: str, skip: tuple[str, ...] = ()) -> list[Piece]:
    """One piece per score file under the folders, named by its path below the folder (below music21's
    corpus when there are several folders), in the preferred format; byte-identical copies only once."""
    root = _music21_root()
    base = root / folders[0] if len(folders) == 1 else root
    chosen: dict[Path, Path] = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            stem = path.with_suffix("")
            if path.suffix in SCORE_SUFFIXES and stem.name not in skip:
                best = chosen.get(stem)
                if best is None or SCORE_SUFFIXES.index(path.suffix) < SCORE_SUFFIXES.index(best.suffix):
                    chosen[stem] = path
    pieces, seen = [], set()
    for stem, path in sorted(chosen.items()):
        digest = hashlib.sha256(path.read_bytes()).digest()
        if digest not in seen:  # palestrina holds a few files twice under two names
            seen.add(digest)
            pieces.append(Piece(str(path), None, stem.relative_to(base).as_posix() + ".mid"))
    return pieces


def _tunes(folder: str, skip: tuple[str, ...] = ()) -> list[Piece]:
    """Each tune of each ABC file (a collection of many), named FILE/NNNN.mid by its X: number."""
    return [
        Piece(str(path), number, f"{path.stem}/{number:04d}.mid")
        for path in sorted((_music21_root() / folder).glob("*.abc"))
        if path.stem not in skip
        for number in tune_numbers(path)
    ]


def _chorales() -> list[Piece]:
    from music21.corpus import chorales

    # Riemenschneider's 371 numbers name 350 distinct chorales: some appear twice.
    names = sorted(set(chorales.Iterator(returnType="filename")))
    return [Piece(name, None, name.replace("/", "_") + ".mid") for name in names]


def _chorale_programs(tracks: list[Track]) -> None:
    """By voice name, as aurl has always converted the chorales (their programs stay what they were);
    instruments that double the voices in a few take 0. The three that name no voice plainly (two Humdrum
    files and BWV 41.6, whose parts are "Soprano Oboe 1 Violin1"...) go by voice order instead."""
    names = [track.name.strip().lower() for track in tracks]
    if not any(name in VOICE_PROGRAMS for name in names):
        by_voice(tracks)
        return
    for track, name in zip(tracks, names, strict=True):
        track.program = VOICE_PROGRAMS.get(name, 0)


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """A TimeoutError where the block runs longer than `seconds` (a converter process's own alarm; no limit
    where the platform has no SIGALRM), raised again each second after, should music21 catch one."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(*_: object) -> None:
        raise TimeoutError(f"took over {seconds:g} s to convert (in music21)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _convert(job: tuple[Piece, str, Callable[[list[Track]], None], bool]) -> tuple[str, str | None, bool]:
    """Convert one piece (aurl.data.scores.to_midi) within PIECE_SECONDS and write its MIDI file; returns the
    piece's name, an error (or None) and whether its bar lines are the score's."""
    piece, out, programs, with_chords = job
    try:
        with _time_limit(PIECE_SECONDS):
            converted = to_midi(parse_score(piece.source, piece.number), programs, with_chords)
        converted.midi.dump_midi(out)
        return piece.name, None, converted.aligned
    except Exception as err:  # music21 raises many types for the odd malformed score
        Path(out).unlink(missing_ok=True)
        return piece.name, f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}", False


@dataclass(frozen=True)
class Conversion:
    """What `CorpusSpec.convert` did, as a corpus's complete.json records it."""

    converted: int
    failed: dict[str, str]  # piece name → why it could not be converted
    unaligned: list[str]  # written as music21 writes them: their bar lines could not all be made the score's


def _converter_version(root: Path) -> int:
    """The version of the converter that converted the corpus folder; 0 where none has."""
    done = root / "complete.json"
    return json.loads(done.read_text()).get("converter", 1) if done.is_file() else 0


@dataclass(frozen=True)
class CorpusSpec:
    name: str  # builtin:NAME
    description: str
    parts: str  # what a piece holds, in words, for `aurl corpora`
    pieces: Callable[[], list[Piece]]  # listed from music21's files without parsing a score
    programs: Callable[[list[Track]], None]  # sets the General MIDI program of each track that has notes
    chords: bool = False  # its chord symbols become a track of chords

    def convert(
        self, out: Path, workers: int = 1, log: Callable[[str], None] = print, pieces: list[Piece] | None = None
    ) -> Conversion:
        """Write the pieces (all by default) as MIDI files under out, in `workers` processes; each failure is
        also logged."""
        pieces = self.pieces() if pieces is None else pieces
        jobs = []
        for piece in pieces:
            (out / piece.name).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((piece, str(out / piece.name), self.programs, self.chords))
        failed, unaligned, step = {}, [], max(50, len(jobs) // 10)
        with ProcessPoolExecutor(max(1, workers)) as pool:
            for done, (name, err, aligned) in enumerate(pool.map(_convert, jobs, chunksize=8), 1):
                if err:
                    failed[name] = err
                    log(f"  skipped {name}: {err}")
                elif not aligned:
                    unaligned.append(name)
                if done % step == 0:
                    log(f"  {done}/{len(jobs)} pieces")
        return Conversion(len(jobs) - len(failed), failed, unaligned)

    def folder(self, workers: int = 1, log: Callable[[str], None] = print) -> Path:
        """The corpus as MIDI files, converted on first use under AURL_CACHE (again where an older converter
        converted it)."""
        root = cache_dir() / self.name
        version = _converter_version(root)
        if version >= CONVERTER:
            return root
        pieces = self.pieces()
        if not version:
            log(f"Converting {len(pieces)} pieces of builtin:{self.name} from music21 to MIDI in {root} (once) ...")
        else:
            log(f"builtin:{self.name} was converted by an older converter (version {version}); converting again ...")
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.name}-", dir=root.parent))
        done = self.convert(tmp, workers, log, pieces)
        (tmp / "complete.json").write_text(json.dumps({"converter": CONVERTER, **asdict(done)}))
        if done.unaligned:
            log(f"  {len(done.unaligned)} pieces keep music21's bar lines (listed as unaligned in complete.json)")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)  # atomic: a crash never leaves a half-built corpus that looks complete
        return root

    def files(self, workers: int = 1, log: Callable[[str], None] = print) -> list[SourceFile]:
        root = self.folder(workers, log)
        return [SourceFile(p, p.relative_to(root).as_posix()) for p in root.rglob("*.mid")]

    def info(self) -> CorpusInfo:
        root = cache_dir() / self.name
        converted = _converter_version(root) >= CONVERTER  # else converted (again) on first use
        return CorpusInfo(
            f"builtin:{self.name}", self.description, len(self.pieces()), self.parts, root if converted else None
        )


@dataclass(frozen=True)
class CorpusUnion:
    """Several corpora as one, each file named MEMBER/NAME so that its split stays what it is alone."""

    name: str
    description: str
    members: tuple[str, ...]

    def files(self, workers: int = 1, log: Callable[[str], None] = print) -> list[SourceFile]:
        return [
            SourceFile(f.path, f"{member}/{f.name}")
            for member in self.members
            for f in CORPORA[member].files(workers, log)
        ]

    def info(self) -> CorpusInfo:
        rows = [CORPORA[member].info() for member in self.members]
        cache = cache_dir() if all(row.cache for row in rows) else None
        return CorpusInfo(f"builtin:{self.name}", self.description, sum(r.pieces for r in rows), "1-8 parts", cache)


CLASSICAL = (
    "beethoven", "haydn", "mozart", "schubert", "schumann_robert", "schumann_clara", "chopin", "corelli",
    "cpebach", "handel", "weber", "verdi", "beach", "joplin", "schoenberg", "webern", "liliuokalani", "johnson_j_r",
)  # fmt: skip
ESSEN_TESTS = ("test0", "test1", "testd", "teste")  # music21's test files: copies of songs in the others

CORPORA: dict[str, CorpusSpec | CorpusUnion] = {
    spec.name: spec
    for spec in (
        CorpusSpec("bach-chorales", "Bach's four-part chorales", "4 voices", _chorales, _chorale_programs),
        CorpusSpec(
            "palestrina",
            "Palestrina's mass movements",
            "3-8 voices",
            partial(_files, "palestrina"),
            by_voice,
        ),
        CorpusSpec(
            "monteverdi",
            "Monteverdi's madrigals, books 3-5",
            "5-6 voices",
            partial(_files, "monteverdi", skip=("madrigal.3.1_old",)),
            by_voice,
        ),
        CorpusSpec(
            "early",
            "Trecento and early Renaissance polyphony (trecento, Ciconia, Zacara da Teramo, Lusitano)",
            "1-4 voices",
            partial(_files, "trecento", "ciconia", "luca", "lusitano"),
            by_voice,
        ),
        CorpusSpec(
            "classical",
            "String quartets (Haydn, Mozart, Beethoven, Schumann), piano pieces and songs",
            "2-7 parts",
            partial(_files, *CLASSICAL),
            by_instrument_name,
        ),
        CorpusSpec(
            "essen",
            "The Essen folksong collection: German, other European and Chinese songs",
            "melody",
            partial(_tunes, "essenFolksong", skip=ESSEN_TESTS),
            by_voice,
        ),
        CorpusSpec(
            "oneill",
            "O'Neill's Music of Ireland (1850 tunes)",
            "melody",
            partial(_tunes, "oneills1850"),
            by_voice,
        ),
        CorpusSpec(
            "ryans",
            "Ryan's Mammoth Collection of fiddle tunes",
            "melody",
            partial(_files, "ryansMammoth"),
            by_voice,
        ),
        CorpusSpec(
            "nottingham",
            "The two Nottingham Music Database tunes music21 ships (the database has about 1,000)",
            "melody + chords",
            partial(_tunes, "nottingham-dataset"),
            by_voice,
            chords=True,
        ),
    )
}
CORPORA["music21"] = CorpusUnion(
    "music21",
    "All of the above but the Bach chorales: a base corpus to pretrain on before them",
    tuple(name for name in CORPORA if name != "bach-chorales"),
)


def builtin_files(name: str, workers: int = 1, log: Callable[[str], None] = print) -> list[SourceFile]:
    """The MIDI files of `builtin:NAME`, converted on first use."""
    if name not in CORPORA:
        raise DataError(f"builtin:{name}: unknown built-in corpus; available: {', '.join(CORPORA)}")
    return CORPORA[name].files(workers, log)


def corpora() -> list[CorpusInfo]:
    """Each built-in corpus with its piece count (from music21's listing), parts and cache folder."""
    return [spec.info() for spec in CORPORA.values()]
