"""The MidiTok tokenizer built from config, its identity hash, and id lookups for augmentation."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import miditok
import numpy as np

from aurl.config import TokenizerConfig
from aurl.data.controls import CONTROLS, SAVED, attach
from aurl.data.grid import VoiceGrid
from aurl.data.layout import HOLD, LAYOUT_TOKENS
from aurl.data.multitrack import INFILL_TOKENS
from aurl.errors import ConfigError, DataError

TOKENIZER_FILE = "tokenizer.json"


def build_tokenizer(cfg: TokenizerConfig) -> miditok.MusicTokenizer:
    beat_res = {tuple(int(p) for p in key.split("-")): res for key, res in cfg.beat_res.items()}
    params = cfg.model_dump(
        exclude={
            "kind",
            "extra",
            "beat_res",
            "bpe_vocab_size",
            "base",
            "controls",
            "holds",
            "voice_programs",
            "voice_ties",
        }
    )
    if cfg.kind == "MMM":
        params["base_tokenizer"] = cfg.base
        params["special_tokens"] = ["PAD", "BOS", "EOS", "MASK", *INFILL_TOKENS]
        params.update({CONTROLS[name][0]: True for name in cfg.controls})
    elif cfg.time_ordered:
        params["special_tokens"] = ["PAD", "BOS", "EOS", "MASK", *LAYOUT_TOKENS]  # time-ordered: co-creation
        if cfg.holds:
            params["special_tokens"].append(HOLD.partition("_")[0])
        if cfg.controls:  # MidiTok has none for one stream: aurl attaches them (aurl.data.controls)
            params[SAVED] = list(cfg.controls)
    elif cfg.kind == "VoiceGrid":
        params.update(voice_programs=list(cfg.voice_programs), ties=cfg.voice_ties)
    try:
        tok_cfg = miditok.TokenizerConfig(beat_res=beat_res, **params, **cfg.extra)
        tokenizer = _kind(cfg.kind)(tok_cfg)
    except (TypeError, ValueError, KeyError, AssertionError) as err:
        raise DataError(f"tokenizer: MidiTok rejected these settings ({err}); fix the tokenizer section") from None
    attach(tokenizer)
    if cfg.bpe_vocab_size is not None and cfg.bpe_vocab_size <= len(tokenizer.vocab):
        raise ConfigError(
            f"tokenizer.bpe_vocab_size: {cfg.bpe_vocab_size} must exceed the {len(tokenizer.vocab)} base tokens; "
            "raise it or set it to null"
        )
    return tokenizer


KINDS: dict[str, type[miditok.MusicTokenizer]] = {"VoiceGrid": VoiceGrid}  # aurl's own, beside MidiTok's


def _kind(name: str) -> type[miditok.MusicTokenizer]:
    return KINDS.get(name) or getattr(miditok, name)


def tokenizer_hash(tokenizer: miditok.MusicTokenizer) -> str:
    """Identity of a tokenization: equal hashes mean equal token ids for equal MIDI."""
    state = {
        "kind": type(tokenizer).__name__,
        "vocab": tokenizer.vocab,
        "config": tokenizer.config.to_dict(serialize=True),
    }
    if tokenizer.is_trained:
        state["learned"] = tokenizer.vocab_model
    return _digest(state)


def settings_hash(cfg: TokenizerConfig) -> str:
    """Identity of the tokenizer settings: a learned (BPE) vocabulary also depends on the data, so a
    prepared dataset records this beside its tokenizer's own hash, and training compares this one."""
    base = tokenizer_hash(build_tokenizer(cfg))
    return base if cfg.bpe_vocab_size is None else _digest({"base": base, "bpe_vocab_size": cfg.bpe_vocab_size})


def _digest(state: dict) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


def learn_bpe(tokenizer: miditok.MusicTokenizer, pieces: list[np.ndarray], vocab_size: int) -> None:
    """Train the tokenizer's BPE model in place on base-token pieces, split per bar as MidiTok does."""
    if not pieces:
        raise DataError("tokenizer.bpe_vocab_size: no training-split file to learn BPE merges from; add files")
    words = []
    for ids in pieces:  # what MidiTok's own TokTrainingIterator yields for a file
        seq = miditok.TokSequence(ids=[int(i) for i in ids])
        tokenizer.complete_sequence(seq)
        bars = [bar.ids for bar in seq.split_per_bars() if len(bar)]
        words.append(tokenizer._ids_to_bytes(bars, as_one_str=True))
    tokenizer.train(vocab_size, model="BPE", iterator=words)


def encode_bpe(tokenizer: miditok.MusicTokenizer, ids: np.ndarray) -> np.ndarray:
    seq = miditok.TokSequence(ids=[int(i) for i in ids])
    tokenizer.encode_token_ids(seq)
    return np.asarray(seq.ids, dtype=token_dtype(len(tokenizer)))


def base_tokens(tokenizer: miditok.MusicTokenizer) -> list[list[str]]:
    """The base tokens each id stands for: one, or the run a learned (BPE) id merges (none for the bare
    word-start mark of MidiTok's pre-tokenizer, an id its encodings never use)."""
    if not tokenizer.is_trained:
        return [[tokenizer[i]] for i in range(len(tokenizer))]
    out = []
    for i in range(len(tokenizer)):
        seq = miditok.TokSequence(ids=[i], are_ids_encoded=True)
        tokenizer.decode_token_ids(seq)
        out.append(seq.tokens)
    return out


def save_tokenizer(tokenizer: miditok.MusicTokenizer, folder: Path) -> None:
    tokenizer.save(Path(folder) / TOKENIZER_FILE)


def load_tokenizer(folder: Path) -> miditok.MusicTokenizer:
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise DataError(f"{path}: tokenizer file missing; re-run `aurl prepare` (or train) to recreate it")
    params = json.loads(path.read_text())
    kind = str(params.get("tokenization"))
    if kind not in KINDS and not hasattr(miditok, kind):
        raise DataError(f"{path}: unknown tokenization {kind!r}")
    tokenizer = _kind(kind)(params=path)
    attach(tokenizer)
    return tokenizer


def bar_token_ids(tokenizer: miditok.MusicTokenizer) -> list[int]:
    """Ids of the tokens that open a bar (learned ids too: BPE merges start at a bar, never cross one):
    the summary positions of hierarchical attention, and what generation counts bars by."""
    return [i for i, run in enumerate(base_tokens(tokenizer)) if run and run[0].startswith("Bar_")]


def token_type_weights(tokenizer: miditok.MusicTokenizer, weights: dict[str, float]) -> np.ndarray:
    """Loss weight per token id from weights per token type (the part of a token before "_"); 1 elsewhere.
    Ids beyond the base vocabulary (BPE merges) weigh 1."""
    types = {token.partition("_")[0] for token in tokenizer.vocab}
    unknown = sorted(set(weights) - types)
    if unknown:
        raise ConfigError(
            f"train.token_weights: {', '.join(unknown)} not a token type of this tokenizer; "
            f"types are {', '.join(sorted(types))}"
        )
    out = np.ones(len(tokenizer), dtype=np.float32)
    for token, i in tokenizer.vocab.items():
        out[i] = weights.get(token.partition("_")[0], 1.0)
    return out


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= np.iinfo(np.uint16).max else np.dtype("<u4")


@dataclass(frozen=True)
class TokenTables:
    """Arrays indexed by token id that let augmentation rewrite pitches and velocities with lookups."""

    pitch: np.ndarray  # pitch of each Pitch_* token, -1 elsewhere (drum pitches are never transposed)
    pitch_id: np.ndarray  # token id of each pitch 0..127, -1 where the vocabulary has none
    velocity_bin: np.ndarray  # bin index of each Velocity_* token, -1 elsewhere
    velocity_id: np.ndarray  # token id of each velocity bin
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int

    @classmethod
    def from_tokenizer(cls, tokenizer: miditok.MusicTokenizer) -> TokenTables:
        vocab: dict[str, int] = tokenizer.vocab  # base tokens; learned (BPE) ids come after them
        size = len(tokenizer)
        pitch = np.full(size, -1, dtype=np.int64)
        pitch_id = np.full(128, -1, dtype=np.int64)
        velocity_bin = np.full(size, -1, dtype=np.int64)
        velocities = sorted((int(tok.split("_")[1]), i) for tok, i in vocab.items() if tok.startswith("Velocity_"))
        for token, i in vocab.items():
            kind, _, value = token.partition("_")
            if kind == "Pitch":
                pitch[i] = int(value)
                pitch_id[int(value)] = i
        velocity_id = np.array([i for _, i in velocities], dtype=np.int64)
        velocity_bin[velocity_id] = np.arange(len(velocity_id))
        return cls(
            pitch,
            pitch_id,
            velocity_bin,
            velocity_id,
            size,
            vocab["PAD_None"],
            vocab["BOS_None"],
            vocab["EOS_None"],
        )
