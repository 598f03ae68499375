"""Parse MIDI files (symusic) and scores in notation (music21, aurl.data.scores) and tokenize them (MidiTok) into
a prepared dataset, in parallel and incrementally.

A prepared dataset is a folder: `tokens.bin` (every file's token ids back to back), `manifest.json`
(format version, tokenizer hash, and per file: sha256, offset, length, split, and the stats of the corpus
profile), `rejected.jsonl` (one line per unusable file with the reason) and `tokenizer.json`. A re-run
tokenizes only files that are new or changed (by sha256), and everything when the tokenizer changed; a
file keeps the split it was given first, whatever changed (see aurl.data.corpus.place_splits).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import miditok
import numpy as np
import symusic

from aurl.config import Config
from aurl.data.corpus import SPLITS, SourceFile, load_file, place_splits, resolve_source
from aurl.data.frames import frames_of
from aurl.data.profile import FileStats, Profile, profile_of, score_stats
from aurl.data.rebar import parse_metre, rebarred
from aurl.data.tokenize import (
    TOKENIZER_FILE,
    build_tokenizer,
    encode_bpe,
    learn_bpe,
    settings_hash,
    token_dtype,
    tokenizer_hash,
)
from aurl.errors import DataError
from aurl.files import FolderLock, write_together
from aurl.progress import Progress

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENS = "tokens.bin"
REJECTED = "rejected.jsonl"


@dataclass
class PrepareReport:
    out: Path
    found: int = 0
    reused: int = 0
    tokenized: int = 0
    rejected: list[dict] = field(default_factory=list)
    tokens: int = 0
    splits: Counter = field(default_factory=Counter)
    profile: Profile | None = None  # of the usable files; None only when there is none
    warnings: list[str] = field(default_factory=list)  # what the tokenizer drops of the corpus, a line each
    split_notes: list[str] = field(default_factory=list)  # files moved off their hash split, no validation
    dropped: Counter = field(default_factory=Counter)  # what the usable scores hold that tokens do not, by kind
    copies: int = 0  # training pieces prepared again under other bar lines (data.rebar)

    def table(self) -> str:
        reasons = Counter(r["reason"].split(":")[0] for r in self.rejected)
        rows = [
            ("files found", self.found),
            ("reused (unchanged)", self.reused),
            ("tokenized now", self.tokenized),
            ("rejected", len(self.rejected)),
            *((f"  {reason}", n) for reason, n in reasons.most_common()),
            ("usable files", sum(self.splits.values())),
            *((f"  {split}", n) for split, n in sorted(self.splits.items())),
            *((("copies under other bar lines (train)", self.copies),) if self.copies else ()),
            ("tokens", self.tokens),
        ]
        width = max(len(name) for name, _ in rows)
        notes = list(self.split_notes)
        if self.dropped:
            kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(self.dropped.items()))
            notes.append(f"dropped from the scores (aurl's tokens hold none): {kinds}")
        return "\n".join([*(f"{name:<{width}}  {value:>10,}" for name, value in rows), *notes])


_worker_tokenizer: miditok.MusicTokenizer | None = None


def _init_worker(tokenizer: miditok.MusicTokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def tokenize_score(tokenizer: miditok.MusicTokenizer, score: symusic.Score) -> np.ndarray:
    """One token stream for a whole score (with program tokens, tracks stay apart inside it)."""
    if not tokenizer.config.use_programs and len(score.tracks) > 1:
        merged = score.tracks[0].copy()
        for track in score.tracks[1:]:
            merged.notes.extend(track.notes)
        merged.notes.sort()
        score.tracks = [merged]
    seq = tokenizer.encode(score)
    if isinstance(seq, list):  # per-track output: one track at most here
        seq = seq[0] if seq else miditok.TokSequence(ids=[])
    frames = frames_of(tokenizer)
    ids = frames.restate(seq.ids) if frames is not None else seq.ids
    return np.asarray(ids, dtype=token_dtype(len(tokenizer)))


Copies = dict[str, tuple[np.ndarray, FileStats]]  # a piece under other bar lines, by its name's suffix


def _tokenize_file(
    path: Path, number: int | None, max_bytes: int, rebar: dict[str, list[str]] | None = None
) -> tuple[np.ndarray | None, str, int, FileStats | None, dict[str, int], Copies]:
    """(token ids, "", notes, stats, what a score held that tokens do not, its copies under the metres `rebar`
    maps its own to) for a usable file (a tune of an ABC file of several: `number`), else (None, reason, 0,
    None, {}, {})."""
    size = path.stat().st_size
    if size == 0:
        return None, "empty file", 0, None, {}, {}
    if size > max_bytes:
        return None, f"too large: {size / 2**20:.1f} MB over data.max_file_mb", 0, None, {}, {}
    score, reason, dropped = load_file(path, number)
    if score is None:
        return None, reason, 0, None, {}, {}
    notes = sum(len(t.notes) for t in score.tracks)
    if notes == 0:
        return None, "no notes", 0, None, {}, {}
    # the stats before tokenize_score, which may merge the tracks
    stats = score_stats(score)
    again = {suffix: (copy, score_stats(copy)) for suffix, copy in rebarred(score, rebar or {}).items()}
    try:
        ids = tokenize_score(_worker_tokenizer, score)
        copies = {suffix: (tokenize_score(_worker_tokenizer, copy), s) for suffix, (copy, s) in again.items()}
    except Exception as err:  # MidiTok may fail on exotic content; report the file, keep going
        return None, f"tokenizer failed: {type(err).__name__}: {err}", 0, None, {}, {}
    if ids.size == 0:
        return None, "no tokens", 0, None, {}, {}
    return ids, "", notes, stats, dict(dropped), copies


Job = tuple[str, str, int | None, int, dict[str, list[str]]]
Result = tuple[str, np.ndarray | None, str, int, FileStats | None, dict[str, int], Copies]


def _tokenize_job(job: Job) -> Result:
    name, path, number, max_bytes, rebar = job
    return (name, *_tokenize_file(Path(path), number, max_bytes, rebar))


def _size_rule(rejection: dict) -> bool:
    """Rejected for its size only: data.max_file_mb may have changed since, so look again."""
    return rejection["reason"].startswith("too large")


def _tokenize_all(
    jobs: list[Job],
    tokenizer: miditok.MusicTokenizer,
    workers: int,
    progress: bool,
    log: Callable[[str], None],
) -> Iterator[Result]:
    """Results of _tokenize_job for every job, in order, from a process pool when workers > 1."""
    with Progress(len(jobs), "prepare", "file", log, progress=progress) as bar:
        if workers > 1 and len(jobs) > 1:
            # fork: workers inherit the imported libraries and the tokenizer instead of re-importing them.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            chunk = max(1, min(16, len(jobs) // (workers * 8)))
            with ProcessPoolExecutor(workers, ctx, initializer=_init_worker, initargs=(tokenizer,)) as pool:
                for result in pool.map(_tokenize_job, jobs, chunksize=chunk):
                    bar.update()
                    yield result
        else:
            _init_worker(tokenizer)
            for job in jobs:
                result = _tokenize_job(job)
                bar.update()
                yield result


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_manifest(out: Path) -> dict:
    """The manifest of an earlier prepare of `out`, read once ({} when there is none or it is unreadable)."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


@dataclass
class _Previous:
    """What an earlier prepare with the same tokenizer left: its manifest, its entries and rejections keyed
    by file name (in the order they were written), and its tokens."""

    manifest: dict = field(default_factory=dict)
    entries: dict[str, dict] = field(default_factory=dict)
    rejected: dict[str, dict] = field(default_factory=dict)
    tokens: np.ndarray | None = None


def _load_previous(out: Path, manifest: dict, thash: str) -> _Previous:
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("tokenizer_hash") != thash:
        return _Previous()
    try:
        tokens = np.memmap(out / TOKENS, dtype=np.dtype(manifest["dtype"]), mode="r")
        rejected = [json.loads(line) for line in (out / REJECTED).read_text().splitlines() if line]
        entries = {e["name"]: e for e in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return _Previous()
    return _Previous(manifest, entries, {r["name"]: r for r in rejected}, tokens)


def _placed(manifest: dict) -> dict[str, str]:
    """Each file's split in an earlier prepare of `out`, whatever its tokenizer or version: it never moves."""
    try:
        return {e["name"]: e["split"] for e in manifest["files"] if e.get("split") in SPLITS}
    except (KeyError, TypeError, AttributeError):
        return {}


def prepare(
    source: str,
    out: str | Path,
    config: Config,
    workers: int = 1,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> PrepareReport:
    """Build or update the prepared dataset in `out` from the MIDI and score files of `source`: one process at a
    time (it holds the folder's lock), and its files change together or not at all."""
    with FolderLock(Path(out), "--out", log):
        return _prepare(source, Path(out), config, workers, log, progress)


def _prepare(
    source: str, out: Path, config: Config, workers: int, log: Callable[[str], None], progress: bool
) -> PrepareReport:
    files = resolve_source(source, workers, log)
    tokenizer = build_tokenizer(config.tokenizer)
    bpe = config.tokenizer.bpe_vocab_size
    # A learned vocabulary depends on every training file, so with BPE everything is tokenized again.
    earlier = _read_manifest(out)
    rebar = config.data.rebar  # copies under other bar lines: other settings prepare every file again
    if rebar and not config.tokenizer.use_time_signatures:
        raise DataError("data.rebar: needs tokenizer.use_time_signatures (without them every bar reads as 4/4)")
    unknown = [m for targets in rebar.values() for m in targets if parse_metre(m) not in tokenizer.time_signatures]
    if unknown:
        known = ", ".join(f"{n}/{d}" for n, d in tokenizer.time_signatures)
        raise DataError(f"data.rebar: {', '.join(unknown)} not among the tokenizer's time signatures ({known})")
    same = bpe is None and earlier.get("rebar", {}) == rebar
    old = _load_previous(out, earlier, tokenizer_hash(tokenizer)) if same else _Previous()
    old_copies: dict[str, list[dict]] = {}
    for entry in old.entries.values():
        if "copy_of" in entry:
            old_copies.setdefault(entry["copy_of"], []).append(entry)
    report = PrepareReport(out=out, found=len(files))

    arrays: dict[str, np.ndarray] = {}
    entries: dict[str, dict] = {}
    rejected: dict[str, dict] = {}
    todo: list[SourceFile] = []
    hashes: dict[Path, str] = {}  # the tunes of an ABC file share its hash: read it once
    for f in files:
        sha = hashes.get(f.path) or hashes.setdefault(f.path, _sha256(f.path))
        entry, rejection = old.entries.get(f.name), old.rejected.get(f.name)
        if entry is not None and entry["sha256"] == sha and "stats" in entry:  # older versions' entries lack stats
            for kept in [entry, *old_copies.get(f.name, [])]:
                arrays[kept["name"]] = old.tokens[kept["offset"] : kept["offset"] + kept["length"]]
                entries[kept["name"]] = {**kept, "sha256": sha}
        elif rejection is not None and rejection["sha256"] == sha and not _size_rule(rejection):
            rejected[f.name] = rejection
        else:
            todo.append(f)
            entries[f.name] = {"name": f.name, "sha256": sha}
            continue
        report.reused += 1

    max_bytes = int(config.data.max_file_mb * 2**20)
    jobs = [(f.name, str(f.path), f.number, max_bytes, rebar) for f in todo]
    paths = {f.name: str(f.path) for f in todo}
    for name, ids, reason, notes, stats, dropped, copies in _tokenize_all(jobs, tokenizer, workers, progress, log):
        if ids is None:
            sha = entries.pop(name)["sha256"]
            rejected[name] = {"name": name, "path": paths[name], "sha256": sha, "reason": reason}
        else:
            arrays[name] = ids
            entries[name]["notes"] = notes
            entries[name]["stats"] = stats.to_json()
            if dropped:
                entries[name]["dropped"] = dropped
            for suffix, (copy_ids, copy_stats) in copies.items():
                arrays[name + suffix] = copy_ids
                entries[name + suffix] = {
                    "name": name + suffix, "sha256": entries[name]["sha256"], "notes": notes,
                    "stats": copy_stats.to_json(), "copy_of": name,
                }  # fmt: skip
            report.tokenized += 1

    d = config.data
    originals = sorted((e for e in entries.values() if "copy_of" not in e), key=lambda e: e["name"])
    splits, report.split_notes = place_splits(
        [e["name"] for e in originals], _placed(earlier), d.valid_fraction, d.test_fraction
    )
    # a copy trains only: under other bar lines a held-out piece would still be seen in training
    kept = [e for e in entries.values() if "copy_of" not in e or splits[e["copy_of"]] == "train"]
    ordered = sorted(kept, key=lambda e: e["name"])
    for entry in ordered:
        entry["split"] = splits[entry.get("copy_of", entry["name"])]
    if bpe is not None and ordered:  # learned on the training split only, so validation stays unseen
        learn_bpe(tokenizer, [arrays[e["name"]] for e in ordered if e["split"] == "train"], bpe)
        arrays = {name: encode_bpe(tokenizer, ids) for name, ids in arrays.items()}
    dtype = token_dtype(len(tokenizer))
    offset = 0
    for entry in ordered:
        entry["offset"], entry["length"] = offset, int(arrays[entry["name"]].size)
        offset += entry["length"]
        if "copy_of" in entry:
            report.copies += 1
        else:
            report.splits[entry["split"]] += 1
            report.dropped.update(entry.get("dropped", {}))
    report.tokens = offset
    report.rejected = sorted(rejected.values(), key=lambda r: r["name"])
    if not ordered:
        log(report.table())
        raise DataError(f"{source}: none of the {len(files)} files is usable (reasons above); nothing written")
    report.profile = profile_of([FileStats.from_json(e["stats"]) for e in originals], [e["length"] for e in originals])
    report.warnings = report.profile.warnings(tokenizer.config)

    def write_tokens(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            for entry in ordered:
                fh.write(np.ascontiguousarray(arrays[entry["name"]], dtype=dtype).tobytes())

    changed = report.tokenized > 0 or len(ordered) != len(old.entries) or old.tokens is None
    writes = {out / TOKENS: write_tokens, out / TOKENIZER_FILE: tokenizer.save} if changed else {}
    manifest = {
        "format_version": FORMAT_VERSION,
        "tokenizer_hash": tokenizer_hash(tokenizer),
        "settings_hash": settings_hash(config.tokenizer),
        "tokenization": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "dtype": dtype.str,
        "source": source,
        "rebar": rebar,
        "total_tokens": offset,
        "files": ordered,
    }
    # A no-change re-run writes nothing: encoding thousands of entries with their stats again was most of
    # its time, and the files would come out the same.
    if manifest != old.manifest or report.rejected != list(old.rejected.values()):
        lines = "".join(json.dumps(r) + "\n" for r in report.rejected)
        writes[out / MANIFEST] = lambda tmp: tmp.write_text(json.dumps(manifest, indent=1))
        writes[out / REJECTED] = lambda tmp: tmp.write_text(lines)
    write_together(writes)
    return report
