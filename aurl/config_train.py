"""The training sections of the config tree: train (optimizer, schedule, batching, checkpoints, with its
curriculum, early_stopping, stability and freeze), and the latent objectives' vae and gan. Importable from
aurl.config like every section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from aurl.config_section import Section


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
    batch_tokens: int = Field(4096, ge=1)
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
