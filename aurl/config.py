"""One typed config tree (data, tokenizer, model, train, generate), loaded from YAML with dotted overrides.

Every section forbids unknown keys, so a typo fails before any work starts with a message that names
the key; pydantic's messages name the allowed values of a bad one. The data, tokenizer and model sections
and the tree live here; the training sections in aurl.config_train, generate in aurl.config_generate, their
base in aurl.config_section; every one is importable from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from aurl.config_generate import GenerateConfig
from aurl.config_section import Section
from aurl.config_train import (
    CurriculumConfig,
    EarlyStoppingConfig,
    FreezeConfig,
    GANConfig,
    StabilityConfig,
    TrainConfig,
    VAEConfig,
)
from aurl.errors import ConfigError

__all__ = [
    "AugmentConfig",
    "Config",
    "CurriculumConfig",
    "DataConfig",
    "EarlyStoppingConfig",
    "FreezeConfig",
    "GANConfig",
    "GenerateConfig",
    "ModelConfig",
    "Section",
    "StabilityConfig",
    "TokenizerConfig",
    "TrainConfig",
    "VAEConfig",
    "build_config",
    "load_config",
    "updated",
]


class TokenizerConfig(Section):
    """MidiTok tokenization and its parameters; `extra` passes any other miditok.TokenizerConfig field."""

    # MMM: every track tokenized on its own (with `base` inside) and the tracks concatenated, for writing
    # tracks with the others in view and infilling bars (training tasks: data.tasks).
    # VoiceGrid: music in a fixed number of one-voice parts as one frame per onset, one token per voice
    # (aurl.data.grid); the voices are `voice_programs`, highest first.
    kind: Literal["REMI", "TSD", "MIDILike", "MMM", "VoiceGrid"] = "REMI"
    base: Literal["REMI"] = Field("REMI", description="MMM: the tokenization inside each track (needs Bar tokens)")
    # MidiTok's attribute controls the model learns to follow, inserted at random in training: MMM (every
    # task) or REMI with use_programs (the tracks written in accompany and infill windows, aurl.data.layout).
    controls: list[
        Literal[
            "bar_density",
            "bar_polyphony",
            "bar_pitch_class",
            "bar_duration",
            "track_density",
            "track_polyphony",
            "track_duration",
            "track_repetition",
        ]
    ] = Field(default_factory=list)
    pitch_range: tuple[int, int] = (21, 109)
    # Positions per beat for note durations/onsets, keyed by a beat range "start-end".
    beat_res: dict[str, int] = Field(default_factory=lambda: {"0-4": 8, "4-12": 4})
    num_velocities: int = Field(32, ge=1, le=127)
    use_velocities: bool = True
    # Program tokens put every track (drums included) in one sequence that decodes back into tracks.
    use_programs: bool = True
    use_tempos: bool = True
    use_time_signatures: bool = True
    use_rests: bool = False
    use_chords: bool = False
    use_sustain_pedals: bool = False
    use_pitch_bends: bool = False
    num_tempos: int = Field(32, ge=1)
    tempo_range: tuple[int, int] = (40, 250)
    # Learn a BPE vocabulary of this many ids on the training split at `aurl prepare` (MidiTok's train;
    # merges stay within a bar). None: the base vocabulary only.
    bpe_vocab_size: int | None = Field(None, ge=1)
    # Onset frames (time-ordered REMI only, aurl.data.frames): at every onset each other voice still sounding is
    # restated as `Program_p Hold`, so what sounds together is written together.
    holds: bool = False
    voice_programs: list[int] = Field([40, 41, 42, 43], min_length=1, description="VoiceGrid: each voice's program")
    # VoiceGrid: a held note restated with its pitch in every frame (Tie_p), not as Hold_Voice
    voice_ties: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def time_ordered(self) -> bool:
        """Whether every track is one stream ordered by onset (REMI with programs): co-creation's layout."""
        return self.kind == "REMI" and self.use_programs and self.extra.get("one_token_stream_for_programs", True)

    @model_validator(mode="after")
    def _check(self) -> TokenizerConfig:
        if self.controls and not (self.kind == "MMM" or self.time_ordered):
            raise ValueError(
                "tokenizer.controls need tokenizer.kind MMM, or REMI with use_programs (one stream of every track)"
            )
        if self.holds and not self.time_ordered:
            raise ValueError("tokenizer.holds needs kind REMI with use_programs (one stream of every track)")
        if self.holds and self.bpe_vocab_size is not None:
            raise ValueError("tokenizer.holds: not available with bpe_vocab_size; set one of them off")
        if self.kind == "VoiceGrid" and (self.bpe_vocab_size is not None or self.controls):
            raise ValueError("tokenizer.kind VoiceGrid: no BPE and no controls; set bpe_vocab_size null, controls []")
        if len(set(self.voice_programs)) != len(self.voice_programs):
            raise ValueError("tokenizer.voice_programs: each voice needs a program of its own (they tell voices apart)")
        if self.kind == "MMM" and self.bpe_vocab_size is not None:
            raise ValueError("tokenizer.bpe_vocab_size: not available with tokenizer.kind MMM; set it to null")
        lo, hi = self.pitch_range
        if not 0 <= lo < hi <= 128:
            raise ValueError("tokenizer.pitch_range must be [low, high) with 0 <= low < high <= 128")
        for key in self.beat_res:
            parts = key.split("-")
            if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) >= int(parts[1]):
                raise ValueError(f"tokenizer.beat_res key {key!r} must look like '0-4' (start-end beats)")
        return self


class AugmentConfig(Section):
    """On-the-fly augmentation of training windows, applied to token ids."""

    # Inclusive range of semitone shifts; a shift that would leave the pitch range is not applied.
    transpose: tuple[int, int] = (-5, 6)
    # Inclusive range of shifts in velocity bins (ignored when the tokenizer has no velocities).
    velocity: tuple[int, int] = (-2, 2)

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        for name in ("transpose", "velocity"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"data.augment.{name} must be [low, high] with low <= high, got {[lo, hi]}")
        return self


class DataConfig(Section):
    dataset: str | None = Field(None, description="prepared dataset folder (from `aurl prepare`) to train on")
    valid_fraction: float = Field(0.05, ge=0, lt=1)
    test_fraction: float = Field(0.05, ge=0, lt=1)
    max_file_mb: float = Field(8.0, gt=0, description="files larger than this are rejected")
    seq_len: int = Field(512, ge=8, description="training window length in tokens")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    segment_bars: int = Field(4, ge=1, description="vae: bars per training segment (cut at Bar tokens)")
    # Training tasks, one drawn per window with these weights: continue (a plain window), accompany (some
    # tracks given, the others written), infill (bars of one track or of all written, the rest given). On
    # the time-ordered stream (REMI with programs) given material is anticipated ahead_bars ahead
    # (aurl.data.layout); multitrack (MMM) windows hold every track of up to window_bars bars.
    tasks: dict[Literal["continue", "accompany", "infill"], float] = Field(default_factory=lambda: {"continue": 1.0})
    ahead_bars: int = Field(1, ge=0, description="bars ahead the given material is anticipated (0: not at all)")
    # A training window of 512 tokens holds about seven bars of a four-voice chorale: two after the gap leave
    # room for the bars before it.
    suffix_bars: int = Field(
        2, ge=0, description="infill: bars after the gap read before it (fill-in-the-middle; 0: the left side only)"
    )
    # Fill-in-the-middle trained on every token (Bavarian et al. 2022) costs left-to-right modelling little;
    # trained on the written notes alone, a co-creation window teaches free generation only a part of itself.
    given_targets: bool = Field(
        True,
        description="accompany and infill windows: given notes are targets of the loss too (the task token and a "
        "request's EOS never)",
    )
    drop_tracks: float = Field(0.3, ge=0, le=1, description="accompany task: share of windows that drop tracks")
    window_bars: int = Field(8, ge=1)
    infill_bars: tuple[int, int] = Field((1, 4), description="infill task: bars taken out, [fewest, most]")
    # Share of the tracks' track-level controls, and of the bars for each bar-level control, drawn
    # uniformly from [low, high] per window (the ratios of MidiTok's create_random_ac_indexes).
    control_tracks: tuple[float, float] = (0.0, 1.0)
    control_bars: tuple[float, float] = (0.0, 1.0)
    # Read by `aurl prepare`: each training piece whose time signatures are all keys is prepared again under
    # each metre listed, the same notes with other bar lines (aurl.data.rebar), e.g. {"3/4": ["6/8"]}
    rebar: dict[str, list[str]] = Field(
        default_factory=dict, description="metres to prepare training pieces again under: {N/D: [N/D, ...]}"
    )

    @property
    def cocreation(self) -> bool:
        """Whether windows train co-creation: a task other than continue has a weight."""
        return any(weight > 0 for name, weight in self.tasks.items() if name != "continue")

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.valid_fraction + self.test_fraction >= 1:
            raise ValueError("data.valid_fraction + data.test_fraction must be below 1 (nothing left to train)")
        if any(w < 0 for w in self.tasks.values()) or sum(self.tasks.values()) <= 0:
            raise ValueError(f"data.tasks: weights must be >= 0 with a positive sum, got {self.tasks}")
        lo, hi = self.infill_bars
        if not 1 <= lo <= hi:
            raise ValueError(f"data.infill_bars must be [fewest, most] with 1 <= fewest <= most, got {[lo, hi]}")
        for name in ("control_tracks", "control_bars"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"data.{name} must be [low, high] with 0 <= low <= high <= 1, got {[lo, hi]}")
        from aurl.data.rebar import parse_metre  # data reads the config; the config only borrows this check

        for metre in [*self.rebar, *(m for targets in self.rebar.values() for m in targets)]:
            try:
                parse_metre(metre)
            except ValueError as err:
                raise ValueError(f"data.rebar: {err}") from None
        return self


class ModelConfig(Section):
    mode: Literal["transformer", "vae", "vae_gan"] = "transformer"
    d_model: int = Field(256, ge=8)
    n_layers: int = Field(4, ge=1)
    n_heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    context: int = Field(1024, ge=8, description="longest sequence the model attends over (KV cache size)")
    rope_base: float = Field(10000.0, gt=0)
    # full: every earlier token; sliding: the last `window` tokens; hierarchical: sliding plus global
    # summary positions (the tokenizer's Bar tokens, or every `global_every`-th token) that all may see.
    attention: Literal["full", "sliding", "hierarchical"] = "full"
    window: int = Field(256, ge=1)
    global_positions: Literal["bar", "every"] = "bar"
    global_every: int = Field(64, ge=1)
    # vae: a bidirectional encoder of encoder_layers pools a segment into a latent z of latent_dim that
    # conditions the causal decoder: added to every position, as latent_prefix vectors before the first
    # token, or both.
    latent_dim: int = Field(64, ge=1)
    encoder_layers: int = Field(2, ge=1)
    latent_injection: Literal["add", "prefix", "both"] = "add"
    latent_prefix: int = Field(1, ge=1, description="prefix vectors z is projected into (injection prefix/both)")
    # fixed: loss terms weighted as configured; uncertainty: each term L is replaced by exp(-s) L + s / 2
    # with a learned log-variance s per term (Kendall et al. 2018). The s live in the model's weights.
    loss_balance: Literal["fixed", "uncertainty"] = "fixed"

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"model.d_model ({self.d_model}) must split into model.n_heads ({self.n_heads}) heads of even size"
            )
        return self


class Config(Section):
    name: str = "aurl"
    data: DataConfig = Field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    vae: VAEConfig = Field(default_factory=VAEConfig)
    gan: GANConfig = Field(default_factory=GANConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.data.seq_len > self.model.context:
            raise ValueError(f"data.seq_len ({self.data.seq_len}) must not exceed model.context ({self.model.context})")
        if self.train.freeze.blocks > self.model.n_layers:
            raise ValueError(
                f"train.freeze.blocks ({self.train.freeze.blocks}) must not exceed "
                f"model.n_layers ({self.model.n_layers})"
            )
        curriculum = self.train.curriculum
        if curriculum.enabled and (curriculum.end_len or self.data.seq_len) > self.data.seq_len:
            raise ValueError(
                f"train.curriculum.end_len ({curriculum.end_len}) must not exceed data.seq_len ({self.data.seq_len})"
            )
        if self.tokenizer.controls and self.tokenizer.time_ordered and not self.data.cocreation:
            raise ValueError(
                "tokenizer.controls: with REMI they are learnt in accompany and infill windows; give data.tasks "
                "accompany or infill a weight (e.g. data.tasks={continue: 0.4, accompany: 0.3, infill: 0.3})"
            )
        if self.train.min_batch * self.data.seq_len > self.train.batch_tokens:
            raise ValueError(
                f"train.batch_tokens ({self.train.batch_tokens}) must hold train.min_batch ({self.train.min_batch})"
                f" windows of data.seq_len ({self.data.seq_len}) tokens"
            )
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _describe(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{loc}'; check the spelling against configs/*.yaml"
    msg = first["msg"].removeprefix("Value error, ")
    if not loc:
        return f"{source}: {msg}"
    return f"{source}: {loc}: {msg} (got {first.get('input')!r})"


def updated(section: Section, values: dict[str, Any], prefix: str) -> Section:
    """A copy of `section` with the non-None `values` set, each validated; errors name `prefix.field`."""
    merged = {**section.model_dump(), **{k: v for k, v in values.items() if v is not None}}
    try:
        return type(section).model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_describe(err, prefix)) from None


def _apply_override(tree: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.lr=3e-4")
    node = tree
    *parents, leaf = key.strip().split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: '{part}' is a value, not a section")
        node = child
    node[leaf] = yaml.safe_load(raw) if raw.strip() else None


def build_config(tree: dict[str, Any], overrides: list[str] | None = None, source: str = "config") -> Config:
    tree = dict(tree)
    for item in overrides or []:
        _apply_override(tree, item)
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when path is None) and apply `key.sub=value` overrides."""
    tree: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; pass an existing YAML file, e.g. configs/demo.yaml")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections (data, model, train, ...)")
    return build_config(tree, overrides, source)
