import json
import shutil

import numpy as np
import pytest

from aurl.data.dataset import PreparedDataset
from aurl.data.prepare import prepare
from aurl.errors import DataError
from tests.conftest import make_midi

QUIET = {"progress": False, "log": lambda s: None}


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_prepared_dataset_holds_every_file_back_to_back(prepared, midi_dir):
    manifest = _manifest(prepared)
    files = manifest["files"]
    assert [f["name"] for f in files] == sorted(p.name for p in midi_dir.glob("*.mid"))
    offsets = [f["offset"] for f in files]
    lengths = [f["length"] for f in files]
    assert offsets == list(np.cumsum([0] + lengths[:-1]))
    assert manifest["total_tokens"] == sum(lengths)
    data = PreparedDataset(prepared)
    assert data.tokens.size == sum(lengths) and int(data.tokens.max()) < data.tables.vocab_size
    assert {f["split"] for f in files} <= {"train", "valid", "test"}


def test_second_prepare_tokenizes_nothing_and_keeps_bytes(midi_dir, tiny_config, tmp_path):
    first = prepare(str(midi_dir), tmp_path, tiny_config, **QUIET)
    tokens = (tmp_path / "tokens.bin").read_bytes()
    second = prepare(str(midi_dir), tmp_path, tiny_config, **QUIET)
    assert first.tokenized == 10 and second.tokenized == 0 and second.reused == 10
    assert (tmp_path / "tokens.bin").read_bytes() == tokens


def test_a_no_change_rerun_writes_nothing_and_a_new_rejection_is_written(midi_dir, tiny_config, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(midi_dir, src)
    out = tmp_path / "out"
    prepare(str(src), out, tiny_config, **QUIET)
    files = [out / name for name in ("manifest.json", "rejected.jsonl", "tokens.bin", "tokenizer.json")]
    written = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files]  # a write renames a new file into place
    again = prepare(str(src), out, tiny_config, **QUIET)
    assert [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files] == written
    assert again.reused == 10 and again.profile == prepare(str(src), tmp_path / "fresh", tiny_config, **QUIET).profile
    (src / "empty.mid").write_bytes(b"")  # only a rejection changes
    assert prepare(str(src), out, tiny_config, **QUIET).tokenized == 0
    assert [json.loads(line)["name"] for line in (out / "rejected.jsonl").read_text().splitlines()] == ["empty.mid"]


def test_changed_and_new_files_are_the_only_ones_tokenized(midi_dir, tiny_config, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(midi_dir, src)
    out = tmp_path / "out"
    prepare(str(src), out, tiny_config, **QUIET)
    make_midi(src / "piece_3.mid", seed=99)  # changed content
    make_midi(src / "sub" / "new.mid", seed=100)  # new file in a subfolder
    report = prepare(str(src), out, tiny_config, **QUIET)
    assert report.tokenized == 2 and report.reused == 9
    # The updated dataset equals one prepared from scratch.
    fresh = tmp_path / "fresh"
    prepare(str(src), fresh, tiny_config, **QUIET)
    assert (out / "tokens.bin").read_bytes() == (fresh / "tokens.bin").read_bytes()
    assert _manifest(out)["files"] == _manifest(fresh)["files"]


def test_a_tokenizer_change_retokenizes_everything(midi_dir, tiny_config, tmp_path):
    prepare(str(midi_dir), tmp_path, tiny_config, **QUIET)
    other = tiny_config.model_copy(deep=True)
    other.tokenizer.use_velocities = True
    assert prepare(str(midi_dir), tmp_path, other, **QUIET).tokenized == 10


def test_bad_files_are_rejected_with_reasons_and_good_ones_prepared(midi_dir, tiny_config, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(midi_dir, src)
    good = (src / "piece_0.mid").read_bytes()
    (src / "truncated.mid").write_bytes(good[: len(good) // 2])
    (src / "empty.mid").write_bytes(b"")
    (src / "notes.mid").write_text("this is a text file, not MIDI\n" * 20)
    (src / "garbage.midi").write_bytes(bytes(range(256)) * 4)
    silent = make_midi(src / "silent.mid", seed=1)
    for track in silent.tracks:
        track.notes.clear()
    silent.dump_midi(str(src / "silent.mid"))
    report = prepare(str(src), tmp_path / "out", tiny_config, **QUIET)
    rejected = {
        json.loads(line)["name"]: json.loads(line)["reason"]
        for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()
    }
    assert set(rejected) == {"truncated.mid", "empty.mid", "notes.mid", "garbage.midi", "silent.mid"}
    assert rejected["empty.mid"] == "empty file"
    assert rejected["silent.mid"] == "no notes"
    assert rejected["notes.mid"].startswith("not a readable MIDI file")
    assert report.tokenized == 10 and len(report.rejected) == 5
    # A re-run remembers the rejections instead of parsing those files again.
    assert prepare(str(src), tmp_path / "out", tiny_config, **QUIET).tokenized == 0


def test_oversized_files_are_rejected(midi_dir, tiny_config, tmp_path):
    small = tiny_config.model_copy(deep=True)
    small.data.max_file_mb = 0.0001  # 100 bytes
    with pytest.raises(DataError, match="none of the 10 files is usable"):
        prepare(str(midi_dir), tmp_path / "out", small, **QUIET)
    assert not (tmp_path / "out").exists()  # nothing written


def test_split_is_stable_when_files_are_added(midi_dir, tiny_config, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(midi_dir, src)
    prepare(str(src), tmp_path / "out", tiny_config, **QUIET)
    before = {f["name"]: f["split"] for f in _manifest(tmp_path / "out")["files"]}
    for i in range(5):
        make_midi(src / f"extra_{i}.mid", seed=50 + i)
    prepare(str(src), tmp_path / "out", tiny_config, **QUIET)
    after = {f["name"]: f["split"] for f in _manifest(tmp_path / "out")["files"]}
    assert {name: after[name] for name in before} == before
    assert len(after) == 15


def test_glob_and_single_file_sources(midi_dir, tiny_config, tmp_path):
    report = prepare(str(midi_dir / "piece_[0-2].mid"), tmp_path / "g", tiny_config, **QUIET)
    assert report.tokenized == 3
    report = prepare(str(midi_dir / "piece_4.mid"), tmp_path / "f", tiny_config, **QUIET)
    assert report.tokenized == 1


def test_missing_source_is_a_clear_error(tiny_config, tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        prepare(str(tmp_path / "missing"), tmp_path / "out", tiny_config, **QUIET)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no MIDI or score files found \(\.mid, \.midi, \.mxl, "):
        prepare(str(tmp_path / "empty"), tmp_path / "out", tiny_config, **QUIET)


def test_two_workers_give_the_same_dataset(midi_dir, tiny_config, tmp_path):
    prepare(str(midi_dir), tmp_path / "one", tiny_config, workers=1, **QUIET)
    prepare(str(midi_dir), tmp_path / "two", tiny_config, workers=2, **QUIET)
    assert (tmp_path / "one" / "tokens.bin").read_bytes() == (tmp_path / "two" / "tokens.bin").read_bytes()
