"""data.rebar: training pieces prepared again under other bar lines, the same notes, in the training split only."""

import json

import pytest

from aurl.config import build_config, load_config
from aurl.data.dataset import PreparedDataset
from aurl.data.prepare import prepare
from aurl.data.tokenize import load_tokenizer
from aurl.errors import ConfigError, DataError
from aurl.generation.generate import tokens_to_score
from tests.conftest import TINY, _with_splits

QUIET = {"progress": False, "log": lambda s: None}
REBAR = {"4/4": ["2/4"], "3/4": ["6/8"]}


def _rebar(config, rebar=REBAR):
    tree = _with_splits(config).model_dump(mode="json")
    tree["data"]["rebar"] = rebar
    return build_config(tree)


def _notes(score):
    return sorted((t.program, n.time, n.duration, n.pitch) for t in score.tracks for n in t.notes)


def test_each_training_piece_comes_again_under_the_new_bar_lines_with_the_same_notes(midi_dir, tiny_config, tmp_path):
    report = prepare(str(midi_dir), tmp_path, _rebar(tiny_config), **QUIET)
    files = json.loads((tmp_path / "manifest.json").read_text())["files"]
    originals = {f["name"]: f for f in files if "copy_of" not in f}
    copies = [f for f in files if "copy_of" in f]
    # the pieces open in 4/4 and change to 3/4: one copy each, in 2/4 then 6/8, of the training pieces only
    trained = sorted(name for name, f in originals.items() if f["split"] == "train")
    assert sorted(f["copy_of"] for f in copies) == trained and report.copies == len(trained)
    assert all(f["split"] == "train" and f["name"] == f["copy_of"] + "@2-4+6-8" for f in copies)
    assert report.splits["train"] == len(trained)  # files are counted once: a copy is not a file

    data = PreparedDataset(tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    for copy in copies:
        source = originals[copy["copy_of"]]
        piece = [int(i) for i in data.tokens[copy["offset"] : copy["offset"] + copy["length"]]]
        words = {tokenizer[i] for i in piece}
        assert {"TimeSig_2/4", "TimeSig_6/8"} <= words and not {"TimeSig_4/4", "TimeSig_3/4"} & words
        original = [int(i) for i in data.tokens[source["offset"] : source["offset"] + source["length"]]]
        assert _notes(tokens_to_score(tokenizer, piece)[0]) == _notes(tokens_to_score(tokenizer, original)[0])


def test_a_rerun_reuses_the_copies_and_other_metres_prepare_everything_again(midi_dir, tiny_config, tmp_path):
    first = prepare(str(midi_dir), tmp_path, _rebar(tiny_config), **QUIET)
    tokens = (tmp_path / "tokens.bin").read_bytes()
    again = prepare(str(midi_dir), tmp_path, _rebar(tiny_config), **QUIET)
    assert again.tokenized == 0 and again.copies == first.copies > 0
    assert (tmp_path / "tokens.bin").read_bytes() == tokens
    other = prepare(str(midi_dir), tmp_path, _rebar(tiny_config, {"4/4": ["2/4"]}), **QUIET)
    assert other.tokenized == 10 and other.copies == 0  # every piece also has a 3/4 bar, which maps to nothing
    plain = prepare(str(midi_dir), tmp_path, _with_splits(tiny_config), **QUIET)
    assert plain.tokenized == 10 and plain.copies == 0


@pytest.mark.parametrize("rebar", [{"4/4": ["7/5"]}, {"four": ["2/4"]}, {"4/4": ["0/4"]}])
def test_a_metre_that_is_no_time_signature_names_the_field(rebar):
    with pytest.raises(ConfigError, match=r"data\.rebar: '.+' is not a time signature"):
        load_config(TINY, [f"data.rebar={json.dumps(rebar)}"])


def test_a_metre_the_tokenizer_cannot_write_is_refused_before_anything_is_written(midi_dir, tiny_config, tmp_path):
    with pytest.raises(DataError, match=r"data\.rebar: 7/8 not among the tokenizer's time signatures"):
        prepare(str(midi_dir), tmp_path / "out", _rebar(tiny_config, {"4/4": ["7/8"]}), **QUIET)
    assert not (tmp_path / "out" / "manifest.json").exists()
