"""Fuzzing `aurl prepare` and `aurl generate --primer` with mutated MIDI files: no input may crash either.

Seeds are real MIDI files (the first --seeds files of a built-in corpus or folder). Each case applies one to
four mutations drawn by Hypothesis: bit flips, byte inserts and deletes, truncation, chunk lengths that lie,
huge delta-time varints, header track counts and divisions, repeated tracks. A worker process runs each case
through the code the CLI runs for one file: prepare's read and tokenize (whose reason rejected.jsonl gets)
and generate's primer_tokens and keep_meter. A case that raises anything but a DataError, kills the worker
(a signal: a segfault in symusic, the memory limit) or outlasts --timeout is a crash, and its input is saved
under OUT/crashes. Every --cli-every-th case also runs through the real `aurl prepare` (beside an intact seed,
so that something is written) and `aurl generate --primer` processes: exit code 0 or 2, an error in one
line, and rejected.jsonl naming the case exactly when the in-process run rejected it.

Run: .venv/bin/python benchmarks/fuzz.py [--cases 10000] [--out fuzz-out]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path

import symusic
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from aurl.config import load_config
from aurl.data.corpus import resolve_source
from aurl.data.prepare import _init_worker, _tokenize_file
from aurl.data.tokenize import build_tokenizer
from aurl.errors import DataError
from aurl.generation.generate import keep_meter, primer_tokens

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "tiny.yaml"
MAX_BYTES = 8 * 2**20  # data.max_file_mb's default
PRIMER_BARS = 4
MEMORY_LIMIT = 3 * 2**30  # of the worker's address space beyond what it holds at the start
HUGE_VARINTS = [b"\x8f\xff\xff\x7f", b"\xff\xff\xff\xff\x7f", b"\x81\x80\x80\x00", b"\x87\xff\xff\x7f"]
KINDS = ["flip", "insert", "delete", "truncate", "chunk_length", "varint", "delta", "tracks", "division", "repeat"]


# ---- mutations ---------------------------------------------------------------------------------
def chunks(data: bytes | bytearray) -> list[int]:
    """Offsets of the chunk headers (MThd, MTrk, ...) as their stated lengths chain them."""
    found, pos = [], 0
    while pos + 8 <= len(data):
        found.append(pos)
        pos += 8 + int.from_bytes(data[pos + 4 : pos + 8], "big")
    return found


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    """`data` with each (kind, a, b) applied in turn; a and b are arbitrary integers that pick places and values."""
    out = bytearray(data)
    for kind, a, b in ops:
        pos = a % (len(out) + 1)
        if kind == "flip" and out:
            out[pos % len(out)] ^= 1 << (b % 8)
        elif kind == "insert":
            out[pos:pos] = bytes([b % 256])
        elif kind == "delete":
            del out[pos : pos + 1 + b % 16]
        elif kind == "truncate":
            del out[pos:]
        elif kind == "chunk_length" and chunks(out):
            at = chunks(out)[a % len(chunks(out))] + 4
            real = int.from_bytes(out[at : at + 4], "big")
            lie = [0, 2**32 - 1, max(0, real + b % 65 - 32), b % 2**32][b % 4]
            out[at : at + 4] = (lie % 2**32).to_bytes(4, "big")
        elif kind == "varint":
            out[pos:pos] = HUGE_VARINTS[b % len(HUGE_VARINTS)]
        elif kind == "delta":  # a track's first delta time made huge, its chunk length kept true
            tracks = [c for c in chunks(out) if out[c : c + 4] == b"MTrk"]
            if tracks:
                at = tracks[a % len(tracks)] + 8
                end = at
                while end < len(out) and out[end] & 0x80:
                    end += 1
                huge = HUGE_VARINTS[b % len(HUGE_VARINTS)]
                out[at : end + 1] = huge
                length = int.from_bytes(out[at - 4 : at], "big") + len(huge) - (min(end + 1, len(out)) - at)
                out[at - 4 : at] = (length % 2**32).to_bytes(4, "big")
        elif kind == "tracks" and len(out) >= 12:
            real = int.from_bytes(out[10:12], "big")
            out[10:12] = [0, 0xFFFF, (real + b % 7 - 3) % 0x10000, b % 0x10000][b % 4].to_bytes(2, "big")
        elif kind == "division" and len(out) >= 14:
            out[12:14] = [0, 1, 0x7FFF, 0x8000 | (b % 0x8000), b % 0x10000][b % 5].to_bytes(2, "big")
        elif kind == "repeat":  # a track copied up to 64 times over and the header's count raised with it
            tracks = [c for c in chunks(out) if out[c : c + 4] == b"MTrk"]
            if tracks and len(out) >= 12:
                start = tracks[a % len(tracks)]
                track = out[start : start + 8 + int.from_bytes(out[start + 4 : start + 8], "big")]
                copies = 1 + b % 64
                out[start:start] = track * copies
                out[10:12] = ((int.from_bytes(out[10:12], "big") + copies) % 0x10000).to_bytes(2, "big")
    return bytes(out)


def midi_cases(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Mutated copies of the seed files."""
    op = st.tuples(st.sampled_from(KINDS), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))

    @st.composite
    def case(draw: st.DrawFn) -> bytes:  # the seed by its index: Hypothesis need not print whole files
        return mutate(seeds[draw(st.integers(0, len(seeds) - 1))], draw(st.lists(op, min_size=1, max_size=4)))

    return case()


# ---- one case, in process ----------------------------------------------------------------------
def prepare_case(path: Path) -> tuple[str, str]:
    """("accepted", "") or ("rejected", reason) as `aurl prepare` decides for one file (_init_worker first)."""
    ids, reason, *_ = _tokenize_file(path, None, MAX_BYTES)
    return ("accepted", "") if ids is not None else ("rejected", reason)


def primer_case(path: Path, tokenizer) -> tuple[str, str]:
    """("accepted", "") or ("error", message) as `aurl generate --primer` reads the file and keeps its meter."""
    try:
        _, head, _ = primer_tokens(path, tokenizer, PRIMER_BARS)
        written = symusic.Score(tokenizer.time_division)  # a piece as the tokenizer decodes it
        keep_meter(written, head, tokenizer)
        written.dumps_midi()
    except DataError as err:
        return "error", str(err)
    return "accepted", ""


def run_case(path: Path, tokenizer) -> dict[str, tuple[str, str]]:
    """Both checks; an exception other than a DataError is a crash, named by its last line."""
    result = {}
    for name, check in (("prepare", lambda: prepare_case(path)), ("primer", lambda: primer_case(path, tokenizer))):
        try:
            result[name] = check()
        except Exception as err:
            result[name] = ("crash", traceback.format_exception_only(type(err), err)[-1].strip()[:300])
    return result


def _serve(conn: Connection, config_path: str, folder: str) -> None:
    """The worker: reads cases from `conn` and answers each with run_case's result."""
    vm = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (vm + MEMORY_LIMIT, vm + MEMORY_LIMIT))
    tokenizer = build_tokenizer(load_config(config_path).tokenizer)
    _init_worker(tokenizer)
    path = Path(folder) / "case.mid"
    while True:
        path.write_bytes(conn.recv_bytes())
        conn.send(run_case(path, tokenizer))


class Worker:
    """run_case in a child process, so that a segfault or a hang is a counted crash, not the end of the run."""

    def __init__(self, config: Path, folder: Path, timeout: float):
        self.config, self.folder, self.timeout = config, folder, timeout
        self.proc: multiprocessing.process.BaseProcess | None = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("fork")  # inherits the imported libraries
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, str(self.config), str(self.folder)), daemon=True)
        self.proc.start()

    def run(self, data: bytes) -> dict[str, tuple[str, str]]:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send_bytes(data)
        try:
            if self.conn.poll(self.timeout):
                return self.conn.recv()
            why = f"no answer in {self.timeout:g} s"
        except (EOFError, ConnectionError):
            self.proc.join(5)
            code = self.proc.exitcode
            why = f"worker killed by {signal.Signals(-code).name}" if code and code < 0 else f"worker exit code {code}"
        self.proc.kill()
        self.proc.join()
        self.proc = None
        return {"prepare": ("crash", why), "primer": ("crash", why)}

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()


# ---- the real command line, on a sample of the cases -------------------------------------------
def aurl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aurl", *args], capture_output=True, text=True, timeout=600)


def cli_problem(result: subprocess.CompletedProcess, command: str) -> str:
    """Why a CLI run counts as a crash ("" when it does not): an exit code other than 0 and 2, a traceback,
    or an error that is not one line."""
    if result.returncode not in (0, 2) or "Traceback" in result.stderr:
        return f"aurl {command} exit code {result.returncode}: {result.stderr.strip()[-300:]}"
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    if result.returncode == 2 and (len(errors) != 1 or not errors[0].startswith(f"aurl {command}: error: ")):
        return f"aurl {command}: the error is not one line: {result.stderr.strip()[:300]}"
    return ""


def cli_case(data: bytes, expected: dict[str, tuple[str, str]], seed_midi: bytes, run: Path, work: Path) -> list[str]:
    """Problems of one case through `aurl prepare` and `aurl generate --primer`, compared with in-process."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "midi").mkdir(parents=True)
    (work / "midi" / "case.mid").write_bytes(data)
    (work / "midi" / "seed.mid").write_bytes(seed_midi)
    problems = []
    prep = aurl("prepare", str(work / "midi"), "--out", str(work / "data"), "--config", str(CONFIG), "--no-progress")
    problems.append(cli_problem(prep, "prepare"))
    if prep.returncode == 0:
        rejected = [json.loads(line) for line in (work / "data" / "rejected.jsonl").read_text().splitlines()]
        reasons = {r["name"]: r["reason"] for r in rejected}
        want = expected["prepare"]
        if reasons.get("case.mid", "") != (want[1] if want[0] == "rejected" else ""):
            problems.append(f"rejected.jsonl says {reasons.get('case.mid')!r}, in-process said {want}")
    gen = aurl(
        "generate", "--run", str(run), "--primer", str(work / "midi" / "case.mid"), "--out", str(work / "out"),
        "--num", "1", "--max-tokens", "8", "--primer-bars", str(PRIMER_BARS),
    )  # fmt: skip
    problems.append(cli_problem(gen, "generate"))
    if (gen.returncode == 0) != (expected["primer"][0] == "accepted"):
        problems.append(f"aurl generate exit code {gen.returncode}, in-process said {expected['primer']}")
    return [p for p in problems if p]


def tiny_run(folder: Path, seeds: Path) -> Path:
    """A run of a few steps on the seeds, for `aurl generate --primer` to load."""
    split = ["--set", "data.valid_fraction=0.5"]  # a validation piece among a few seeds
    aurl("prepare", str(seeds), "--out", str(folder / "data"), "--config", str(CONFIG), "--no-progress", *split)
    sets = [f"data.dataset={folder / 'data'}", "train.max_steps=2", "train.peak_flops=1e11"]
    result = aurl("train", "--config", str(CONFIG), "--run-dir", str(folder / "run"), "--no-progress",
                  *(arg for s in sets for arg in ("--set", s)))  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"could not train the run for the CLI cases: {result.stderr[-1000:]}")
    return folder / "run"


# ---- the run and its table ---------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--source", default="builtin:bach-chorales", help="where the seed MIDI files come from")
    parser.add_argument("--seeds", type=int, default=8, help="seed files: the first N of --source")
    parser.add_argument("--cli-every", type=int, default=500, help="also run every Nth case through the CLI")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a case may take before it is a crash")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis's random seed")
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"), help="crashing inputs go to OUT/crashes")
    args = parser.parse_args()

    sources = resolve_source(args.source, log=lambda s: None)[: args.seeds]
    seeds = [f.path.read_bytes() for f in sources]
    crashes_dir = args.out / "crashes"
    tally: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "seeds").mkdir()
        for i, data in enumerate(seeds):
            (tmp / "seeds" / f"seed_{i}.mid").write_bytes(data)
        run = tiny_run(tmp, tmp / "seeds") if args.cli_every else None
        worker = Worker(CONFIG, tmp, args.timeout)
        start = time.perf_counter()

        @seed(args.seed)
        @settings(
            max_examples=args.cases,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(midi_cases(seeds))
        def fuzz(data: bytes) -> None:
            n = tally["cases"] = tally["cases"] + 1
            result = worker.run(data)
            prep, primer = result["prepare"], result["primer"]
            tally[f"prepare {prep[0]}"] += 1
            if prep[0] == "rejected":
                tally[f"prepare rejected: {prep[1].split(':')[0]}"] += 1
            tally[f"primer {primer[0]}"] += 1
            problems = [f"{name}: {detail}" for name, (outcome, detail) in result.items() if outcome == "crash"]
            if run is not None and n % args.cli_every == 0:
                tally["CLI cases"] += 1
                cli = cli_case(data, result, seeds[0], run, tmp / "cli")
                tally["CLI crashes or disagreements"] += bool(cli)
                problems += cli
            if problems:
                tally["crashes"] += 1
                crashes_dir.mkdir(parents=True, exist_ok=True)
                (crashes_dir / f"case_{n}.mid").write_bytes(data)
                (crashes_dir / f"case_{n}.txt").write_text("\n".join(problems) + "\n")

        try:
            fuzz()
        finally:
            worker.close()
        seconds = time.perf_counter() - start

    rows = [("cases tried", tally["cases"]), ("prepare: accepted", tally["prepare accepted"])]
    rows.append(("prepare: rejected (rejected.jsonl)", tally["prepare rejected"]))
    reasons = Counter({k.split(": ", 1)[1]: v for k, v in tally.items() if k.startswith("prepare rejected: ")})
    rows += [(f"  {reason}", count) for reason, count in reasons.most_common()]
    rows += [
        ("generate --primer: accepted", tally["primer accepted"]),
        ("generate --primer: one-line errors", tally["primer error"]),
        (f"CLI cases (every {args.cli_every}th)", tally["CLI cases"]),
        ("  crashes or disagreements", tally["CLI crashes or disagreements"]),
        ("crashes (cases)", tally["crashes"]),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"fuzz: {len(seeds)} seeds from {args.source}, Hypothesis seed {args.seed}")
    print("\n".join(f"{name:<{width}}  {value:>8,}" for name, value in rows))
    print(f"{'cases/s':<{width}}  {tally['cases'] / seconds:>8.1f}")
    if tally["crashes"]:
        print(f"crashing inputs and what happened: {crashes_dir}/")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
