import pytest

from aurl.config import load_config
from aurl.errors import ConfigError
from tests.conftest import ROOT, TINY


def test_yaml_and_overrides_are_typed():
    cfg = load_config(TINY, ["train.lr=3e-4", "model.n_layers=3", "data.augment.transpose=[-2, 2]"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.n_layers == 3
    assert cfg.data.augment.transpose == (-2, 2)
    assert cfg.model.d_model == 32  # from the file


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key 'train.lrr'"):
        load_config(TINY, ["train.lrr=1"])


def test_bad_value_names_field_and_allowed_values():
    with pytest.raises(ConfigError, match=r"train.precision.*'fp32', 'bf16', 'fp16' or 'auto'"):
        load_config(TINY, ["train.precision=fp8"])
    with pytest.raises(ConfigError, match=r"model.n_layers"):
        load_config(TINY, ["model.n_layers=0"])


@pytest.mark.parametrize(
    ("override", "fields"),
    [
        ("train.min_batch=100", "train.min_batch"),
        ("data.seq_len=4096", "data.seq_len"),
        ("model.n_heads=3", "model.n_heads"),
        ("data.augment.transpose=[3, -3]", "data.augment.transpose"),
        ("train.device=cpu;train.precision=fp16", "train.precision fp16 needs CUDA but train.device is cpu"),
        ("train.curriculum.start_len=512;train.curriculum.end_len=128", "train.curriculum.end_len"),
        ("tokenizer.use_programs=false;tokenizer.controls=[bar_density]", "tokenizer.controls need tokenizer.kind MMM"),
        ("tokenizer.controls=[bar_density]", "tokenizer.controls: with REMI they are learnt in accompany and infill"),
        ("tokenizer.kind=MMM;tokenizer.bpe_vocab_size=1000", "tokenizer.bpe_vocab_size"),
        ("data.tasks={infill: -1}", "data.tasks"),
        ("data.infill_bars=[3, 1]", "data.infill_bars"),
    ],
)
def test_impossible_combinations_name_the_fields(override, fields):
    with pytest.raises(ConfigError, match=fields):
        load_config(TINY, override.split(";"))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(TINY, ["train.lr"])


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_loads(path):
    load_config(path)
