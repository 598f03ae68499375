"""Throughput of `aurl prepare` on the built-in Bach chorales, beside a plain symusic + MidiTok loop.

Prints files/s and tokens/s for 1 and 2 workers and for the plain single-process loop, and the time of a
re-run with nothing changed (medians of --repeats runs). Run: .venv/bin/python benchmarks/prepare.py;
`--copies 10` prepares ten copies of the 350 chorales (3,500 small files, a folder per copy), where the
re-run's per-file work (hashing, reading the manifest, the profile) shows.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import symusic

from aurl.config import load_config
from aurl.data.corpus import resolve_source
from aurl.data.prepare import prepare, tokenize_score
from aurl.data.tokenize import build_tokenizer

SOURCE = "builtin:bach-chorales"


def plain_loop(paths: list[Path], config) -> int:
    tokenizer = build_tokenizer(config.tokenizer)
    return sum(len(tokenize_score(tokenizer, symusic.Score(str(p)))) for p in paths)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1, help="prepare this many copies of the corpus (default 1)")
    args = parser.parse_args()
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as copies:
        source = SOURCE
        files = resolve_source(SOURCE, workers=2)  # converts the corpus once if needed, outside the timings
        if args.copies > 1:
            for copy in range(args.copies):
                for f in files:
                    (Path(copies) / f"copy{copy}" / f.name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f.path, Path(copies) / f"copy{copy}" / f.name)
            source = copies
            files = resolve_source(source)
        run(source, [f.path for f in files], config, args.repeats)


def run(source: str, paths: list[Path], config, repeats: int) -> None:
    quiet = {"progress": False, "log": lambda s: None}

    rows: dict[str, list[float]] = {
        "plain loop (symusic + MidiTok, 1 process)": [],
        "aurl prepare, 1 worker": [],
        "aurl prepare, 2 workers": [],
        "aurl prepare re-run, nothing changed": [],
    }
    tokens = 0
    for _ in range(repeats):
        seconds, tokens = timed(lambda: plain_loop(paths, config))
        rows["plain loop (symusic + MidiTok, 1 process)"].append(seconds)
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as out:
                seconds, report = timed(lambda: prepare(source, out, config, workers=workers, **quiet))  # noqa: B023
                rows[f"aurl prepare, {workers} worker{'s' if workers > 1 else ''}"].append(seconds)
                if workers == 2:
                    seconds, rerun = timed(lambda: prepare(source, out, config, workers=2, **quiet))  # noqa: B023
                    assert rerun.tokenized == 0
                    rows["aurl prepare re-run, nothing changed"].append(seconds)
        assert report.tokens == tokens

    plain = statistics.median(rows["plain loop (symusic + MidiTok, 1 process)"])
    first = statistics.median(rows["aurl prepare, 2 workers"])
    print(f"{len(paths)} files, {tokens:,} tokens; medians of {repeats} runs")
    print(f"| {'run':<42} | {'seconds':>8} | {'files/s':>8} | {'tokens/s':>10} | {'vs plain':>8} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 10}|{'-' * 12}|{'-' * 10}|")
    for name, times in rows.items():
        s = statistics.median(times)
        print(f"| {name:<42} | {s:8.3f} | {len(paths) / s:8.0f} | {tokens / s:10,.0f} | {plain / s:7.2f}x |")
    print(f"2 workers vs plain loop: {plain / first:.2f}x (target >= 1.7x)")
    rerun = statistics.median(rows["aurl prepare re-run, nothing changed"])
    print(f"first run (2 workers) vs no-change re-run: {first / rerun:.1f}x faster re-run (target >= 20x)")


if __name__ == "__main__":
    main()
