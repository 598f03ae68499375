"""The built-in corpora: music that music21 ships, converted once to MIDI under AURL_CACHE.

One `CorpusSpec` per corpus says how to list its pieces from music21's files (without parsing a score),
how to name each piece's MIDI file and which General MIDI program each part gets; one converter, `_convert`,
serves them all, keeping the score's bar lines in the MIDI file (music21 writes a pickup at time 0, shifting
every bar line by it; the converter writes it as the end of a full first bar). `builtin:music21` is the union
of every corpus but the Bach chorales (a base model pretrains on it and is measured on them); it reads its
members' folders rather than converting again.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
import re
import shutil
import statistics
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import symusic

from aurl.data.corpus import SourceFile, cache_dir
from aurl.errors import DataError

# What `corpus.parse` reads, by preference when a piece is there in several formats (MusicXML has the
# instrument names; music21 ships some quartet movements as Humdrum too). Analyses (.rntxt) are not scores.
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn", ".abc")

# One program per chorale voice, violin, viola, cello and contrabass from the top, so that voices stay
# separate tracks through tokenization. Other vocal polyphony and melodies follow it by voice order (their part
# names vary from Cantus to P1), so that a model pretrained on builtin:music21 sees a top line and a bass line
# the way the chorales show them.
VOICE_PROGRAMS = {"soprano": 40, "alto": 41, "tenor": 42, "bass": 43}
# Two parts with one program merge into one track when tokenized as one stream, and General MIDI has no
# second violin or second tenor: a part whose program an earlier part has takes the first free one of these
# (string ensembles, voices, then winds, so that the sound stays close).
SPARE_PROGRAMS = (48, 49, 50, 51, 52, 53, 54, 44, 45, 68, 70, 71, 73, 56, 57, 60)
# The converter's version, recorded in each corpus's complete.json: a corpus folder an older one wrote (1: one
# without it) is converted again on first use. Bump it when the MIDI files the converter writes change.
# 2: a pickup is written as the end of a full first bar, so that the file's bar lines are the score's.
CONVERTER = 2
CHORDS = "Chords"  # the track made from chord symbols
CHORDS_PROGRAM = 0  # piano: the usual accompaniment
CHORD_VELOCITY = 64  # below the tune's (music21 writes 90): an accompaniment
Track = symusic.core.TrackTick


@dataclass(frozen=True)
class Piece:
    source: str  # what music21's corpus.parse reads: a corpus name or a file path
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
    pieces = []
    for path in sorted((_music21_root() / folder).glob("*.abc")):
        if path.stem not in skip:
            text = path.read_text(encoding="utf-8", errors="replace")
            for number in re.findall(r"^X:\s*(\d+)", text, flags=re.MULTILINE):
                pieces.append(Piece(str(path), int(number), f"{path.stem}/{int(number):04d}.mid"))
    return pieces


def _chorales() -> list[Piece]:
    from music21.corpus import chorales

    # Riemenschneider's 371 numbers name 350 distinct chorales: some appear twice.
    names = sorted(set(chorales.Iterator(returnType="filename")))
    return [Piece(name, None, name.replace("/", "_") + ".mid") for name in names]


def _mean_pitch(track: Track) -> float:
    return statistics.fmean(note.pitch for note in track.notes)


def _voice_programs(tracks: list[Track]) -> None:
    """Programs by voice, from the highest (by mean pitch) soprano, alto, tenor, spares for more inner voices,
    to the lowest bass; a lone melody is a soprano."""
    voices = sorted(tracks, key=_mean_pitch, reverse=True)
    upper = [VOICE_PROGRAMS["soprano"], VOICE_PROGRAMS["alto"], VOICE_PROGRAMS["tenor"], *SPARE_PROGRAMS]
    programs = upper[: len(voices)]
    if len(voices) > 1:
        programs[-1] = VOICE_PROGRAMS["bass"]
    for track, program in zip(voices, programs, strict=True):
        track.program = program


def _chorale_programs(tracks: list[Track]) -> None:
    """By voice name, as aurl has always converted the chorales (their programs stay what they were);
    instruments that double the voices in a few take 0. The three that name no voice plainly (two Humdrum
    files and BWV 41.6, whose parts are "Soprano Oboe 1 Violin1"...) go by voice order instead."""
    names = [track.name.strip().lower() for track in tracks]
    if not any(name in VOICE_PROGRAMS for name in names):
        _voice_programs(tracks)
        return
    for track, name in zip(tracks, names, strict=True):
        track.program = VOICE_PROGRAMS.get(name, 0)


def _instrument_programs(tracks: list[Track]) -> None:
    """Each part's instrument, found from its name by music21 (which reads "Violino II." and "Klarinette"),
    since the program music21 reads from several quartet scores is missing or wrong; else that program.
    A part whose program a differently named part already has takes a spare; staves of one instrument
    (same name, same program: a piano's two hands) keep one."""
    from music21 import instrument

    def named(track: Track) -> int:
        try:
            program = instrument.fromString(track.name).midiProgram
        except instrument.InstrumentException:  # no instrument by that name: "MusicXML Part", "Gesang"
            program = None
        return track.program if program is None else program

    base = [named(track) for track in tracks]
    taken, owner = set(base), {}
    for track, program in zip(tracks, base, strict=True):
        if owner.setdefault(program, track.name) != track.name:
            program = next(p for p in SPARE_PROGRAMS if p not in taken)
            taken.add(program)
            owner[program] = track.name
        track.program = program


def _unshare_time_signatures(score) -> None:
    """music21's ABC reader puts one TimeSignature object in several measures around a pickup, which its
    MIDI writer then refuses ("already found in this Stream"): give each measure its own copy."""
    from music21 import meter

    seen = set()
    for stream in score.recurse(streamsOnly=True):
        for sig in list(stream.getElementsByClass(meter.TimeSignature)):
            if id(sig) in seen:
                stream.replace(sig, copy.deepcopy(sig))
            seen.add(id(sig))


def _drop_broken_repeats(score) -> None:
    """Repeats music21 cannot follow (an unbalanced repeat bar, a stray ending) make its MIDI writer fail,
    since it plays repeats out: such a score is written as notated, once through."""
    from music21 import bar, repeat, spanner, stream

    if all(repeat.Expander(part).isExpandable() is not False for part in score.parts):
        return
    for measure in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = bar.Barline()
    for kind in (repeat.RepeatExpression, spanner.RepeatBracket):
        score.remove(list(score.recurse().getElementsByClass(kind)), recurse=True)


def _take_chords(score) -> list[tuple[float, float, list[int]]]:
    """Remove the chord symbols (the "Am" over a folk tune; a stray few in some MusicXML) from the score,
    which music21 would otherwise write as notes into a melody's track; returns each as (start, end, MIDI
    pitches) in quarter notes, lasting until the next symbol."""
    from music21 import harmony

    symbols = sorted(
        score.recurse().getElementsByClass(harmony.ChordSymbol), key=lambda s: s.getOffsetInHierarchy(score)
    )
    if not symbols:
        return []
    starts = [float(symbol.getOffsetInHierarchy(score)) for symbol in symbols]
    ends = [*starts[1:], float(score.highestTime)]
    chords = [
        (start, end, [p.midi for p in symbol.pitches])
        for symbol, start, end in zip(symbols, starts, ends, strict=True)
        if symbol.pitches and end > start  # "N.C." has no pitches: silence until the next symbol
    ]
    score.remove(symbols, recurse=True)
    return chords


def _mark_continuations(score) -> None:
    """A bar split in two by a repeat or a fermata is two short measures. music21 marks the second as the
    end of the bar (its paddingLeft, from which `beat` counts) when it reads MusicXML, not when it reads ABC or
    plays repeats out: mark each short measure that follows a short one and fits in the rest of its bar."""
    from music21 import stream

    for part in score.parts:
        filled, sig = 0, None  # how much of the bar the measures before have filled, while it is not full
        for measure in part.getElementsByClass(stream.Measure):
            sig = measure.timeSignature or sig
            if sig is None:
                continue
            bar = sig.barDuration.quarterLength
            if filled and not measure.paddingLeft and filled + measure.duration.quarterLength <= bar:
                measure.paddingLeft = filled
            end = measure.paddingLeft + measure.duration.quarterLength
            filled = end if end < bar else 0


def read_score(piece: Piece):
    """The piece as the converter reads it with music21: repaired where music21's MIDI writer would fail,
    repeats played out (as that writer plays them) and split bars marked, so that each note's `beat` is its
    beat in the MIDI file written from it."""
    from music21 import corpus

    with warnings.catch_warnings():  # music21 warns about every overfull measure it repairs
        warnings.simplefilter("ignore")
        score = corpus.parse(piece.source, number=piece.number, forceSource=True)
        _unshare_time_signatures(score)
        _drop_broken_repeats(score)
        score = score.expandRepeats()
        _mark_continuations(score)
    return score


def _pickup(score) -> float | None:
    """The part of the first bar that a pickup leaves out (0 without one), or None where music21 cannot say:
    a part without measures, parts that disagree."""
    from music21 import stream

    firsts = [part.getElementsByClass(stream.Measure).first() for part in score.parts]
    missing = {None if first is None else float(first.paddingLeft) for first in firsts}
    return missing.pop() if len(missing) == 1 else None


def _shifted(midi: symusic.Score, ticks: int) -> symusic.Score:
    """A copy with everything later by ticks but what music21 writes at time 0 (the first bar's time
    signature, key and tempo), without the time signatures that restate the one before: music21 writes the
    first one again where repeats play the pickup again, and there, mid-bar, it would start a bar."""
    out = midi.shift_time(ticks)
    for events in (out.tempos, out.time_signatures, out.key_signatures, out.markers):
        for event in events:
            if event.time == ticks:
                event.time = 0
    kept = []
    for sig in sorted(out.time_signatures, key=lambda sig: sig.time):
        if not kept or (sig.numerator, sig.denominator) != (kept[-1].numerator, kept[-1].denominator):
            kept.append(sig)
    out.time_signatures = kept
    return out


def _bars_match(midi: symusic.Score, score, missing: float) -> bool:
    """Whether each measure of the score (repeats played out), written `missing` quarters later, starts in a
    bar of the MIDI file where it starts in the score's bar (after its paddingLeft) and ends within that bar.
    Measures after the file's last event hold nothing of it."""
    from miditok.utils import get_bars_ticks
    from music21 import stream

    tpq, last = midi.ticks_per_quarter, midi.end()
    bars = get_bars_ticks(midi)
    for part in score.parts:
        for measure in part.getElementsByClass(stream.Measure):
            start = round((measure.offset + missing) * tpq)
            if start >= last:
                break
            bar = bisect.bisect_right(bars, start) - 1
            if start - bars[bar] != round(measure.paddingLeft * tpq):
                return False
            if bar + 1 < len(bars) and start + round(measure.duration.quarterLength * tpq) > bars[bar + 1]:
                return False
    return True


def _aligned(midi: symusic.Score, score) -> symusic.Score | None:
    """The MIDI file with the score's bar lines: a pickup written as the end of a full first bar (everything
    but the first bar's time signature, key and tempo later by the part it leaves out); None where music21
    cannot say where the bar lines are or the file's would not all be the score's."""
    missing = _pickup(score)
    if missing is None:
        return None
    aligned = _shifted(midi, round(missing * midi.ticks_per_quarter)) if missing else midi
    return aligned if _bars_match(aligned, score, missing) else None


def _convert(job: tuple[Piece, str, Callable[[list[Track]], None], bool]) -> tuple[str, str | None, bool]:
    """Parse one piece with music21 and write it as MIDI, one track per part that has notes (and one for
    its chords where the corpus has them), with the score's bar lines where music21 can say where they are;
    returns the piece's name, an error (or None) and whether its bar lines are the score's."""
    piece, out, programs, with_chords = job
    try:
        score = read_score(piece)
        chords = _take_chords(score)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score.write("midi", fp=out)
        midi = symusic.Score(out)
        midi.tracks = [track for track in midi.tracks if track.notes]
        if not midi.tracks:
            raise ValueError("no notes")
        programs(list(midi.tracks))
        if with_chords and chords:
            tpq = midi.ticks_per_quarter
            track = symusic.Track(name=CHORDS, program=CHORDS_PROGRAM)
            for start, end, pitches in chords:
                for pitch in pitches:
                    track.notes.append(
                        symusic.Note(round(start * tpq), round((end - start) * tpq), pitch, CHORD_VELOCITY)
                    )
            midi.tracks.append(track)
        aligned = _aligned(midi, score)
        (midi if aligned is None else aligned).dump_midi(out)
        return piece.name, None, aligned is not None
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
            _voice_programs,
        ),
        CorpusSpec(
            "monteverdi",
            "Monteverdi's madrigals, books 3-5",
            "5-6 voices",
            partial(_files, "monteverdi", skip=("madrigal.3.1_old",)),
            _voice_programs,
        ),
        CorpusSpec(
            "early",
            "Trecento and early Renaissance polyphony (trecento, Ciconia, Zacara da Teramo, Lusitano)",
            "1-4 voices",
            partial(_files, "trecento", "ciconia", "luca", "lusitano"),
            _voice_programs,
        ),
        CorpusSpec(
            "classical",
            "String quartets (Haydn, Mozart, Beethoven, Schumann), piano pieces and songs",
            "2-7 parts",
            partial(_files, *CLASSICAL),
            _instrument_programs,
        ),
        CorpusSpec(
            "essen",
            "The Essen folksong collection: German, other European and Chinese songs",
            "melody",
            partial(_tunes, "essenFolksong", skip=ESSEN_TESTS),
            _voice_programs,
        ),
        CorpusSpec(
            "oneill",
            "O'Neill's Music of Ireland (1850 tunes)",
            "melody",
            partial(_tunes, "oneills1850"),
            _voice_programs,
        ),
        CorpusSpec(
            "ryans",
            "Ryan's Mammoth Collection of fiddle tunes",
            "melody",
            partial(_files, "ryansMammoth"),
            _voice_programs,
        ),
        CorpusSpec(
            "nottingham",
            "The two Nottingham Music Database tunes music21 ships (the database has about 1,000)",
            "melody + chords",
            partial(_tunes, "nottingham-dataset"),
            _voice_programs,
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
