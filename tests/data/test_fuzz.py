"""Mutated and truncated MIDI files: `aurl prepare` rejects them with a reason, `aurl generate --primer` stops
with a one-line error, and neither crashes (benchmarks/fuzz.py runs the same checks on 10,000 cases)."""

import json
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings

from aurl.config import load_config
from aurl.data import corpus
from aurl.data.corpus import load_midi, read_score
from aurl.data.prepare import _init_worker
from aurl.data.tokenize import build_tokenizer
from aurl.errors import DataError
from benchmarks.fuzz import midi_cases, mutate, prepare_case, primer_case
from tests.conftest import TINY

NOTE = b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x40"  # middle C for a quarter note at 480 ticks per quarter
END = b"\x00\xff\x2f\x00"
HUGE_DELTA = b"\x8f\xff\xff\x7f"


def midi(events: bytes, division: int = 480) -> bytes:
    """A one-track MIDI file of these events (delta time, event, ...) and an end of track."""
    track = events + END
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, division) + b"MTrk" + struct.pack(">I", len(track)) + track


def time_signature(numerator: int, exponent: int) -> bytes:
    """A time signature event at tick 0: the denominator is 2 ** exponent."""
    return bytes([0, 0xFF, 0x58, 4, numerator, exponent, 24, 8])


# Each a crash before read_score checked the score: ZeroDivisionError, or minutes and gigabytes tokenizing.
BROKEN = {
    "zero division": (midi(NOTE, division=0), "invalid header"),
    "zero denominator": (midi(time_signature(4, 8) + NOTE), "invalid time signature"),
    "zero numerator": (midi(time_signature(0, 2) + NOTE), "invalid time signature"),
    # a note 10 million quarters in, at 1 tick per quarter: 2.5 million empty bars before it
    "absurd tick": (midi(NOTE + b"\x84\xe2\xad\x00\x90\x3e\x40\x01\x80\x3e\x40", division=1), "too long"),
    # 65 delta times of 2^25 ticks: past 2^31 the times wrap around to negative ones
    "wrapped times": (midi(b"".join(HUGE_DELTA + b"\xff\x01\x01a" for _ in range(65)) + NOTE), "invalid times"),
}


@pytest.fixture(scope="module")
def tokenizer():
    tokenizer = build_tokenizer(load_config(TINY).tokenizer)
    _init_worker(tokenizer)  # what a prepare worker holds
    return tokenizer


@pytest.mark.parametrize("name", BROKEN)
def test_broken_files_are_rejected_with_their_reason(name, tokenizer, tmp_path):
    data, reason = BROKEN[name]
    path = tmp_path / "broken.mid"
    path.write_bytes(data)
    start = time.perf_counter()
    outcome, why = prepare_case(path)
    assert (outcome, why.split(":")[0]) == ("rejected", reason)
    with pytest.raises(DataError, match=f"^{path}: {reason}"):
        read_score(path)
    assert primer_case(path, tokenizer) == ("error", f"{path}: {why}")
    assert time.perf_counter() - start < 5


def test_a_file_over_the_note_limit_is_rejected(tmp_path, monkeypatch):
    path = tmp_path / "notes.mid"
    path.write_bytes(midi(NOTE * 3))
    monkeypatch.setattr(corpus, "MAX_NOTES", 2)
    assert load_midi(path) == (None, "too many notes: 3 over the limit of 2")


def test_the_seeds_are_accepted(midi_dir, tokenizer):
    path = midi_dir / "piece_0.mid"
    assert prepare_case(path) == ("accepted", "")
    assert primer_case(path, tokenizer) == ("accepted", "")
    assert load_midi(path)[1] == ""


@pytest.fixture(scope="module")
def seeds(midi_dir) -> list[bytes]:
    return [(midi_dir / f"piece_{i}.mid").read_bytes() for i in range(3)]


def test_mutated_files_never_crash_in_process(seeds, tokenizer, tmp_path_factory):
    """Every outcome is acceptance, a one-line rejection or a one-line DataError; anything else raises."""
    path = tmp_path_factory.mktemp("fuzz") / "case.mid"
    outcomes = []

    @settings(max_examples=300, deadline=None, database=None, derandomize=True, suppress_health_check=[*HealthCheck])
    @given(midi_cases(seeds))
    def case(data: bytes) -> None:
        path.write_bytes(data)
        prepared, reason = prepare_case(path)
        primed, error = primer_case(path, tokenizer)
        assert "\n" not in reason and "\n" not in error
        assert prepared == "accepted" or reason
        outcomes.append((prepared, primed))

    case()
    assert len(outcomes) == 300
    assert {"accepted", "rejected"} <= {p for p, _ in outcomes}  # the mutations both keep and break files


@pytest.fixture(scope="module")
def cases(seeds, tmp_path_factory):
    """Mutated files (the broken ones above among them) beside intact ones, in one folder."""
    folder = tmp_path_factory.mktemp("cases")
    for i, data in enumerate(seeds):
        (folder / f"seed_{i}.mid").write_bytes(data)
    for i in range(40):
        kind = ["flip", "truncate", "chunk_length", "delta", "division", "tracks", "repeat", "delete"][i % 8]
        (folder / f"mutated_{i}.mid").write_bytes(mutate(seeds[i % 3], [(kind, 7919 * i, 104729 * i + i)]))
    for name, (data, _) in BROKEN.items():
        (folder / f"broken_{name.replace(' ', '_')}.mid").write_bytes(data)
    return folder


def _aurl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aurl", *args], capture_output=True, text=True, timeout=300)


def test_prepare_lists_every_unusable_file_in_rejected_jsonl(cases, tmp_path):
    result = _aurl("prepare", str(cases), "--out", str(tmp_path / "data"), "--config", str(TINY), "--no-progress")
    assert result.returncode == 0, result.stderr
    rejected = [json.loads(line) for line in (tmp_path / "data" / "rejected.jsonl").read_text().splitlines()]
    reasons = {r["name"]: r["reason"] for r in rejected}
    expected = {p.name: prepare_case(p) for p in sorted(cases.iterdir())}
    assert reasons == {name: why for name, (outcome, why) in expected.items() if outcome == "rejected"}
    assert {f"broken_{n.replace(' ', '_')}.mid" for n in BROKEN} <= set(reasons)
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert len(manifest["files"]) + len(rejected) == len(expected)


@pytest.mark.parametrize("name", ["zero denominator", "absurd tick"])
def test_generate_with_a_broken_primer_is_a_one_line_error(trained_run, cases, tmp_path, name):
    primer = cases / f"broken_{name.replace(' ', '_')}.mid"
    result = _aurl("generate", "--run", str(trained_run), "--primer", str(primer), "--out", str(tmp_path), "--num", "1")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"aurl generate: error: {primer}: {BROKEN[name][1]}: ")
