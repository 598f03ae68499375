"""One typed config tree (data, tokenizer, model, train, generate), loaded from YAML with dotted overrides.

Every section forbids unknown keys, so a typo fails before any work starts with a message that names
the key; pydantic's messages name the allowed values of a bad one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aurl.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TokenizerConfig(Section):
    """MidiTok tokenization and its parameters; `extra` passes any other miditok.TokenizerConfig field."""

    # MMM: every track tokenized on its own (with `base` inside) and the tracks concatenated, for writing
    # tracks with the others in view and infilling bars (training tasks: data.tasks).
    kind: Literal["REMI", "TSD", "MIDILike", "MMM"] = "REMI"
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


class CurriculumConfig(Section):
    """Sequence length grows from start_len to end_len over `steps` optimizer steps."""

    enabled: bool = False
    start_len: int = Field(128, ge=8)
    end_len: int | None = Field(None, ge=8, description="default: data.seq_len")
    steps: int = Field(1000, ge=1)
    schedule: Literal["linear", "exponential", "cosine"] = "linear"
    multiple: int = Field(64, ge=1, description="lengths are rounded down to a multiple of this")


class EarlyStoppingConfig(Section):
    enabled: bool = False
    metric: str = Field("loss", description="a validation metric of the objective, e.g. loss or accuracy")
    mode: Literal["min", "max"] = "min"
    patience: int = Field(5, ge=1, description="evaluations without improvement before stopping")
    min_delta: float = Field(0.0, ge=0)


class StabilityConfig(Section):
    nan_patience: int = Field(3, ge=1, description="consecutive non-finite steps before reloading a checkpoint")
    lr_backoff: float = Field(0.5, gt=0, le=1, description="LR factor applied after such a reload")
    spike_factor: float = Field(10.0, gt=1, description="warn when grad norm exceeds this x its running median")
    spike_window: int = Field(100, ge=5)


class FreezeConfig(Section):
    """Weights kept as they are while training (fine-tuning a few dozen files: fewer weights to overfit)."""

    embeddings: bool = Field(False, description="the token embedding (tied to the output layer)")
    blocks: int = Field(0, ge=0, description="the first N transformer blocks (of a vae: of its decoder)")


class TrainConfig(Section):
    # Fine-tuning: start from another run's weights (a new optimizer, LR schedule and step 0). The model
    # settings must build the same weights and the dataset must use the same tokenizer.
    init_from: str | None = Field(None, description="RUN or RUN:CHECKPOINT (best, latest, step_N) to start from")
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    optimizer: Literal["adamw"] = "adamw"
    fused: bool | None = Field(None, description="fused AdamW kernel; default: on for CUDA")
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.1, ge=0)
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["cosine", "linear", "constant", "plateau"] = "cosine"
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: int = Field(2, ge=0, description="evaluations without improvement before the LR drops")
    max_steps: int = Field(1000, ge=1, description="optimizer steps; also the horizon of the LR schedule")
    # A wall-time budget: training stops when it is spent, and the LR schedule runs over whichever of
    # max_steps and max_minutes comes first (progress = the larger of the two fractions done).
    max_minutes: float | None = Field(None, gt=0, description="minutes of training, evaluation included")
    max_epochs: float | None = Field(None, gt=0, description="stop earlier once this many epochs are seen")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")
    # Token-budget batching: micro-batch size = batch_tokens // seq_len, clamped to [min_batch, max_batch].
    batch_tokens: int = Field(8192, ge=1)
    min_batch: int = Field(4, ge=1)
    max_batch: int = Field(64, ge=1)
    batch_probe: bool = Field(False, description="CUDA: find the largest micro-batch that fits, accumulate the rest")
    probe_memory_fraction: float = Field(0.85, gt=0, le=1)
    # auto: bf16 on a GPU that has it (else fp16), and on a CPU where a bf16 matrix product runs faster
    # than an fp32 one (bf16 units: AVX-512 BF16, AMX); fp32 elsewhere. The log says which and why.
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    seed: int = 0
    deterministic: bool = Field(False, description="deterministic kernels: bit-exact resume, slower on GPU")
    activation_checkpointing: Literal["off", "every", "every_n", "auto"] = "off"
    checkpoint_every_n: int = Field(2, ge=1)
    activation_budget_mb: float = Field(4096, gt=0, description="auto: checkpoint when activations exceed this")
    compile: bool = Field(False, description="torch.compile the model (costs start-up time; pays on GPUs)")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="multi-process strategy under torchrun")
    peak_flops: float | None = Field(None, gt=0, description="device peak FLOP/s for MFU; measured when unset")
    log_interval: int = Field(10, ge=1)
    # Every sample_interval steps (0: never), sample_count pieces of sample_tokens tokens are written to
    # RUN/samples/step_N/ (MIDI + PNG), and their musical features and piano roll go to TensorBoard.
    sample_interval: int = Field(0, ge=0)
    sample_count: int = Field(2, ge=1)
    sample_tokens: int = Field(256, ge=1)
    eval_interval: int = Field(200, ge=1)
    eval_batches: int = Field(
        20, ge=1, description="validation batches per evaluation, all ranks together (torchrun shares them out)"
    )
    save_interval: int = Field(500, ge=1)
    keep_last: int = Field(2, ge=1, description="step checkpoints kept besides the best")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    # Weight of each token type (the MidiTok prefix: Pitch, Position, Duration, Velocity, Bar ...) in the
    # next-token / reconstruction cross-entropy; unnamed types weigh 1.
    token_weights: dict[str, float] = Field(default_factory=dict)
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    stability: StabilityConfig = Field(default_factory=StabilityConfig)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.min_batch > self.max_batch:
            raise ValueError(f"train.min_batch ({self.min_batch}) must not exceed train.max_batch ({self.max_batch})")
        if self.min_lr > self.lr:
            raise ValueError(f"train.min_lr ({self.min_lr}) must not exceed train.lr ({self.lr})")
        if self.precision == "fp16" and self.device in ("cpu", "mps"):
            raise ValueError(
                f"train.precision fp16 needs CUDA but train.device is {self.device}; use bf16 or fp32 there"
            )
        if self.init_from is not None and not self.init_from.strip():
            raise ValueError("train.init_from: empty; give a run directory, e.g. runs/base or runs/base:best")
        if any(w < 0 for w in self.token_weights.values()):
            raise ValueError(f"train.token_weights: weights must be >= 0, got {self.token_weights}")
        c = self.curriculum
        if c.end_len is not None and c.end_len < c.start_len:
            raise ValueError(
                f"train.curriculum.end_len ({c.end_len}) must not be below train.curriculum.start_len ({c.start_len})"
            )
        return self


class VAEConfig(Section):
    """The latent objective: reconstruction + beta x KL, with annealing and free bits."""

    beta: float = Field(1.0, ge=0, description="weight of the KL term once annealed")
    anneal: Literal["none", "linear", "cosine", "cyclical"] = "linear"
    anneal_steps: int = Field(1000, ge=1, description="steps to reach beta (one cycle for cyclical)")
    free_bits: float = Field(0.0, ge=0, description="nats per latent dimension the KL may use for free")


class GANConfig(Section):
    """vae_gan: the critic, its own optimizer, and how the adversarial terms enter the generator's loss."""

    critic_d_model: int = Field(128, ge=8)
    critic_layers: int = Field(2, ge=1)
    critic_heads: int = Field(4, ge=1)
    critic_lr: float = Field(2e-4, gt=0)
    critic_betas: tuple[float, float] = (0.5, 0.9)
    adv_weight: float = Field(0.1, ge=0, description="weight of the adversarial loss once warmed up")
    fm_weight: float = Field(1.0, ge=0, description="weight of feature matching against the critic")
    adv_start: int = Field(100, ge=0, description="step at which the adversarial weight starts to grow from 0")
    adv_warmup: int = Field(200, ge=1, description="steps for the adversarial weight to reach adv_weight")
    r1_gamma: float = Field(0.0, ge=0, description="R1 gradient penalty on real sequences (0: off)")
    gumbel_tau: float = Field(1.0, gt=0, description="Gumbel-softmax temperature of generated sequences")


class GenerateConfig(Section):
    num: int = Field(4, ge=1)
    max_tokens: int = Field(1024, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0, description="0 keeps every token")
    top_p: float = Field(1.0, gt=0, le=1)
    min_p: float = Field(0.0, ge=0, lt=1, description="drop tokens below min_p x the top token's probability")
    repetition_penalty: float = Field(1.0, ge=1, description="CTRL's penalty on tokens in the recent window")
    repetition_window: int = Field(64, ge=1, description="tokens the repetition penalty looks back over")
    min_tokens: int = Field(0, ge=0, description="no end token before this many new tokens")
    max_bars: int | None = Field(None, ge=1, description="stop a piece before its (max_bars + 1)-th bar")
    constrained: bool = Field(True, description="sample only tokens the tokenizer's grammar allows next")
    batch_size: int = Field(8, ge=1, description="pieces sampled together")
    primer_bars: int = Field(4, ge=1, description="bars of a --primer file the piece continues")
    meter: str = Field(
        "hold",
        description="hold: every bar keeps the first bar's time signature (a primer's or a song's); free: the "
        "model may change it at any bar; or one to hold, e.g. 3/4",
    )
    sweeps: int = Field(
        0,
        ge=0,
        description="co-creation: revision sweeps after the first pass, each rewriting every span of one or two bars "
        "of every written track with everything else given on both sides, the temperature annealed (pseudo-Gibbs)",
    )
    keep_sweeps: bool = Field(False, description="co-creation: also keep each take as it was before each sweep")
    seed: int = 0
    # What a request of one task (generate, continue, accompany, infill, encode, interpolate) takes where it
    # says nothing, over the settings above: the settings that measured best for it (docs/benchmarks.md).
    # Harmonisations cooler than free pieces: fewer voice-leading faults (docs/writing-music.md).
    tasks: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"accompany": {"temperature": 0.7}, "infill": {"temperature": 0.7}},
        description="per task, the settings a request of it takes where it gives none",
    )

    @field_validator("meter")
    @classmethod
    def _meter(cls, value: str) -> str:
        if not re.fullmatch(r"hold|free|[1-9][0-9]*/[1-9][0-9]*", value):
            raise ValueError("expected hold, free or a time signature such as 3/4")
        return value

    @model_validator(mode="before")
    @classmethod
    def _passes(cls, data: Any) -> Any:
        """A run from before sweeps saved `passes`, its first pass counted: N passes are N - 1 sweeps."""
        if isinstance(data, dict) and "passes" in data:
            if "sweeps" in data:
                raise ValueError("passes: now sweeps, the revision sweeps after the first pass (N passes: N - 1)")
            data = dict(data)
            passes = data.pop("passes")
            data["sweeps"] = max(0, passes - 1) if isinstance(passes, int) else passes
        return data

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        known = set(cls.model_fields) - {"tasks"}
        for task, settings in value.items():
            unknown = sorted(set(settings) - known)
            if unknown:
                raise ValueError(f"{task}: {', '.join(unknown)} not a generate setting")
        return value

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError(
                f"generate.min_tokens ({self.min_tokens}) must not exceed generate.max_tokens ({self.max_tokens})"
            )
        return self

    z_temperature: float = Field(1.0, gt=0, description="vae: scale of z drawn from the prior")
    steps: int = Field(8, ge=2, description="vae: files written by an interpolation")


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
