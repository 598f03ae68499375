"""Splits of small folders: the hash split leaves them lopsided, so prepare sets a validation file aside from
three usable files on, never empties train, and never moves a file an earlier prepare placed."""

import hashlib
import itertools
import json
from collections import Counter

import pytest

from aurl.data.corpus import place_splits, split_of
from aurl.data.prepare import prepare
from tests.conftest import lopsided_folder, make_midi

QUIET = {"progress": False, "log": lambda s: None}


def _hashed(split: str, count: int, prefix: str = "f") -> list[str]:
    """The first `count` names that the hash split (default fractions) puts in `split`."""
    names = (f"{prefix}{i}.mid" for i in itertools.count())
    return list(itertools.islice((n for n in names if split_of(n, 0.05, 0.05) == split), count))


def _splits(out) -> dict[str, str]:
    return {f["name"]: f["split"] for f in json.loads((out / "manifest.json").read_text())["files"]}


@pytest.mark.parametrize(("train", "test"), [(3, 0), (4, 1), (10, 2)])
def test_a_folder_of_three_or_more_sets_one_file_aside_for_validation(tmp_path, tiny_config, train, test):
    names = lopsided_folder(tmp_path / "midi", train, test)
    report = prepare(str(tmp_path / "midi"), tmp_path / "out", tiny_config, **QUIET)
    # The file whose hash is nearest the valid band [0.05, 0.1) goes, from train or (if it keeps one) test.
    position = {n: int.from_bytes(hashlib.sha256(n.encode()).digest()[:8], "big") / 2**64 for n in names}
    distance = {n: position[n] - 0.1 if position[n] >= 0.1 else 0.05 - position[n] for n in names}
    donors = [n for n in names if test > 1 or split_of(n, 0.05, 0.05) == "train"]
    moved = min(donors, key=distance.get)
    came_from = split_of(moved, 0.05, 0.05)
    assert [n for n, split in _splits(tmp_path / "out").items() if split == "valid"] == [moved]
    expected = Counter(train=train, valid=1, test=test)
    expected[came_from] -= 1
    assert report.splits == expected
    assert report.split_notes == [
        f"valid: {moved}, moved from {came_from} (its hash is nearest the valid band), since the hash split "
        f"left valid empty among the {train + test} usable files"
    ]
    assert report.split_notes[0] in report.table().splitlines()


def test_one_or_two_files_keep_no_validation_and_say_so(tmp_path, tiny_config):
    lopsided_folder(tmp_path / "midi", 2, 0)
    report = prepare(str(tmp_path / "midi"), tmp_path / "out", tiny_config, **QUIET)
    assert report.splits == {"train": 2}
    assert report.split_notes == [
        "valid: none of the 2 usable files (3 or more set one aside); training runs without evaluation"
    ]


def test_a_move_never_empties_train_and_prefers_not_to_empty_test():
    one_train, two_test = _hashed("train", 1), _hashed("test", 2)
    splits, _ = place_splits(one_train + two_test, {}, 0.05, 0.05)
    assert sorted(splits.values()) == ["test", "train", "valid"]
    assert splits[one_train[0]] == "train"
    # Three train files and one test file: a train file goes, so test keeps its file.
    splits, _ = place_splits(_hashed("train", 3) + _hashed("test", 1), {}, 0.05, 0.05)
    assert sorted(splits.values()) == ["test", "train", "train", "valid"]


def test_a_single_file_hashed_to_test_trains():
    splits, notes = place_splits(_hashed("test", 1), {}, 0.05, 0.05)
    assert list(splits.values()) == ["train"] and notes[0].startswith("train: ")


def test_no_validation_file_is_forced_when_the_fraction_is_zero():
    names = _hashed("train", 5)
    splits, notes = place_splits(names, {}, 0.0, 0.05)
    assert "valid" not in splits.values() and "data.valid_fraction is 0" in notes[0]


def test_re_preparing_keeps_every_earlier_placement(tmp_path, tiny_config):
    src = tmp_path / "midi"
    lopsided_folder(src, 3, 0)
    prepare(str(src), tmp_path / "out", tiny_config, **QUIET)
    before = _splits(tmp_path / "out")
    assert sorted(before.values()) == ["train", "train", "valid"]
    for i, name in enumerate(_hashed("train", 4, prefix="new")):
        make_midi(src / name, seed=100 + i, bars=4)
    prepare(str(src), tmp_path / "out", tiny_config, **QUIET)
    after = _splits(tmp_path / "out")
    assert len(after) == 7 and {n: after[n] for n in before} == before
    assert list(after.values()).count("valid") == 1
    assert place_splits(sorted(after), {}, 0.05, 0.05)[0] != after  # from scratch, another file would go
    # Nor does a new tokenizer, which tokenizes everything again.
    other = tiny_config.model_copy(deep=True)
    other.tokenizer.use_velocities = True
    assert prepare(str(src), tmp_path / "out", other, **QUIET).tokenized == 7
    assert _splits(tmp_path / "out") == after
