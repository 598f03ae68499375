"""`aurl train` as a function: config → prepared data → model → objective → Trainer, in a run directory."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from aurl.config import Config, Section, TrainConfig, load_config
from aurl.data.dataset import PreparedDataset, TokenBudgetBatchSampler
from aurl.data.tokenize import (
    TOKENIZER_FILE,
    bar_token_ids,
    load_tokenizer,
    settings_hash,
    token_type_weights,
    tokenizer_hash,
)
from aurl.errors import CheckpointError, ConfigError
from aurl.files import LOCK_FILE, FolderLock, write_together
from aurl.modes import MODES, LanguageModelMode, build_model, build_objective
from aurl.training.checkpoint import (
    POINTERS,
    latest_good_checkpoint,
    load_weights,
    remove_partial,
    resolve_checkpoint,
    verify_checkpoint,
)
from aurl.training.curriculum import batch_plan, batch_size_for, largest_fitting_batch
from aurl.training.distributed import DistEnv, barrier, init_distributed, pick_device, shutdown, wrap_model
from aurl.training.monitor import measure_peak_flops
from aurl.training.rng import RandomState
from aurl.training.sizing import sized_like, sized_on_ranks
from aurl.training.trainer import SampleHook, Trainer, pick_precision

CONFIG_FILE = "config.yaml"


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse a run directory that is a file, or that holds a run the user did not ask to replace."""
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: exists and is not a folder; choose another --run-dir")
    if (run_dir / "checkpoints").exists() and not overwrite:
        raise CheckpointError(
            f"{run_dir}: already holds a trained run; pass --resume to continue it, --overwrite to replace it, "
            "or choose another --run-dir"
        )


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Empty a run directory the user asked to replace (all but the lock this process holds)."""
    check_run_dir(run_dir, overwrite)
    if (run_dir / "checkpoints").exists():
        for path in run_dir.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != LOCK_FILE:
                path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """The config a run was started with (its config.yaml), with overrides such as a longer max_steps."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no {CONFIG_FILE} to resume from; pass the --run-dir of an earlier run")
    return load_config(path, overrides)


def _activation_checkpointing(model: torch.nn.Module, cfg: TrainConfig, batch: int, seq_len: int) -> int:
    """Blocks between recomputed ones (0: none), as train.activation_checkpointing says."""
    if cfg.activation_checkpointing == "every":
        return 1
    if cfg.activation_checkpointing == "every_n":
        return cfg.checkpoint_every_n
    if cfg.activation_checkpointing == "auto":
        budget = cfg.activation_budget_mb * 2**20
        return 1 if model.activation_bytes(batch, seq_len) > budget else 0
    return 0


class CudaMemory:
    """The device memory counters the batch probe reads (a test passes a stand-in)."""

    def __init__(self, device: torch.device):
        self.device = device

    def total(self) -> int:
        return torch.cuda.get_device_properties(self.device).total_memory

    def reset(self) -> None:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device)


def probe_micro_batch(
    model: torch.nn.Module,
    mode: LanguageModelMode,
    item: dict[str, torch.Tensor],
    cfg: TrainConfig,
    device: torch.device,
    memory: CudaMemory | None = None,
) -> int:
    """The largest micro-batch of copies of a training item whose forward and backward (as the mode runs
    them) stay within probe_memory_fraction of the device's memory."""
    memory = memory or CudaMemory(device)
    limit = cfg.probe_memory_fraction * memory.total()

    def fits(batch: int) -> bool:
        memory.reset()
        copies = {k: v.expand(batch, *v.shape).to(device) for k, v in item.items()}
        mode.logits(model, copies).float().logsumexp(-1).mean().backward()
        model.zero_grad(set_to_none=True)
        return memory.peak() <= limit

    return largest_fitting_batch(fits, cfg.max_batch, cfg.min_batch)


def build_trainer(
    config: Config,
    data: PreparedDataset,
    run_dir: Path,
    env: DistEnv,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
    profile_steps: tuple[int, int] | None = None,
    sample_hook: SampleHook | None = None,
) -> Trainer:
    """Windows, sampler and loaders over `data`, the model (checkpointed, compiled, wrapped as the config
    says), its objective, and the Trainer around them."""
    precision, why = pick_precision(config.train.precision, device, env)
    if config.train.precision == "auto":
        log(f"train.precision auto: {precision} ({why})")
    cfg = config.train.model_copy(update={"precision": precision})
    # The run's one seeding: each rank's own stream, which training draws from; what is built draws inside
    # rng.alike(), so that it starts the same on every rank and leaves that stream where seeding left it.
    rng = RandomState(cfg.seed, env)
    torch.use_deterministic_algorithms(cfg.deterministic)
    seq_len = config.data.seq_len
    mode = MODES[config.model.mode]
    with rng.alike():  # identical initial weights on every rank (FSDP shards them as they are)
        model = build_model(config.model, data.tables.vocab_size, bar_token_ids(data.tokenizer)).to(device)
    frozen = model.freeze(cfg.freeze.embeddings, cfg.freeze.blocks)  # before the optimizer takes the rest
    if frozen:
        log(f"train.freeze: {frozen / 1e6:.2f}M weights kept as they are")
    augment = config.data.augment
    if data.tokenizer.is_trained:  # a learned id holds pitches inside it: no lookup can transpose it
        augment = None
        log("data.augment: off, BPE token ids cannot be transposed by lookup")
    train_set, valid_set = mode.datasets(config, data, augment)
    if valid_set is None:
        log(
            f"the dataset has no validation pieces ({len(data.manifest['files'])} files): training without "
            "evaluation or early stopping, and `best` names the latest checkpoint"
        )
    batch = batch_size_for(seq_len, cfg.batch_tokens, cfg.min_batch, cfg.max_batch)
    if cfg.batch_probe and device.type == "cuda":
        with rng.alike():  # the probe's dropout
            micro = probe_micro_batch(model, mode, train_set[0], cfg, device)
        if micro < batch:  # the same tokens per step: smaller micro-batches, more of them
            accum = cfg.grad_accum * math.ceil(batch / micro)
            cfg = cfg.model_copy(
                update={"max_batch": micro, "min_batch": min(cfg.min_batch, micro), "grad_accum": accum}
            )
            log(f"batch probe: micro-batch {micro} fits in memory; accumulating {accum} per step")
            batch = micro  # evaluation's batches too
    elif cfg.batch_probe:
        log(f"batch probe needs CUDA; on {device.type} the token-budget rule sets the batch")
    plan = batch_plan(cfg.curriculum, seq_len, cfg.batch_tokens, cfg.min_batch, cfg.max_batch, cfg.grad_accum)
    sampler = TokenBudgetBatchSampler(len(train_set), plan, cfg.seed, env.rank, env.world_size)
    # Own generators: creating a loader's iterator must not draw from the global RNG that dropout uses,
    # or a resumed run (which creates it after restoring that RNG) would drift from an uninterrupted one.
    loader_args = {"num_workers": cfg.num_workers, "pin_memory": device.type == "cuda"}
    loader_args["generator"] = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(train_set, batch_sampler=sampler, **loader_args)
    valid_loader = None if valid_set is None else DataLoader(valid_set, batch_size=batch, shuffle=False, **loader_args)

    every = _activation_checkpointing(model, cfg, batch, seq_len)
    model.set_activation_checkpointing(every)
    if cfg.compile:
        model.compile()
    wrapped = wrap_model(model, env, cfg.strategy, device)
    peak = cfg.peak_flops or measure_peak_flops(device, torch.bfloat16 if cfg.precision == "bf16" else torch.float32)
    log(
        f"model: {config.model.mode}, {model.num_parameters() / 1e6:.2f}M parameters on {device}"
        f"{f' x {env.world_size} ranks ({cfg.strategy})' if env.enabled else ''}; "
        f"data: {len(train_set)} train / {len(valid_set or [])} valid windows of {seq_len} tokens, batch {batch}"
        f"{f', accumulation {cfg.grad_accum}' if cfg.grad_accum > 1 else ''}; "
        f"activation checkpointing {'every ' + str(every) + ' block(s)' if every else 'off'}; "
        f"peak {peak / 1e9:.0f} GFLOP/s"
    )
    if cfg.precision == "bf16" and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        log("warning: this CPU has no bf16 units; bf16 autocast will run far slower than fp32 here")
    weights = token_type_weights(data.tokenizer, cfg.token_weights) if cfg.token_weights else None
    with rng.alike():  # an objective's own modules (the vae_gan critic) start alike on every rank
        objective = build_objective(config, wrapped, data.tables.vocab_size, weights)
    if sample_hook is not None and env.enabled and cfg.strategy == "fsdp":
        log("samples during training: not under FSDP (one rank cannot run a sharded model alone); skipped")
        sample_hook = None
    return Trainer(
        cfg,
        wrapped,
        objective,
        train_loader,
        valid_loader,
        run_dir,
        device,
        env,
        rng,
        peak,
        progress,
        log,
        profile_steps,
        sample_hook,
    )


def parse_init_from(spec: str) -> tuple[Path, str]:
    """train.init_from's RUN[:CHECKPOINT] as (run directory, checkpoint name; best by default)."""
    run, sep, which = spec.rpartition(":")
    if sep and (which in POINTERS or (which.startswith("step_") and which[5:].isdigit())):
        return Path(run), which
    return Path(spec), "best"


def source_checkpoint(config: Config, data: PreparedDataset) -> Path:
    """The checkpoint train.init_from names, once it is known to mean the same thing here: the dataset's
    tokenizer is the source run's (the same token ids) and this config's model takes its weights.
    Checked before anything is written; the source run is only read."""
    spec = config.train.init_from
    source, which = parse_init_from(spec)
    if not (source / CONFIG_FILE).is_file():
        raise CheckpointError(f"train.init_from {spec}: {source} is not a run directory (no {CONFIG_FILE})")
    theirs = load_config(source / CONFIG_FILE)
    if tokenizer_hash(load_tokenizer(source)) != data.tokenizer_hash:
        differ = _differences(theirs.tokenizer, config.tokenizer, "tokenizer") or ["its learned BPE vocabulary"]
        raise ConfigError(
            f"train.init_from {spec}: {config.data.dataset} was prepared with another tokenizer than {source}'s "
            f"({'; '.join(differ)}); prepare your files with {source / CONFIG_FILE}'s tokenizer section"
        )
    path = resolve_checkpoint(source, which)
    verify_checkpoint(path)  # a corrupt file is reported as such, not as weights that do not fit
    try:
        load_weights(path, build_model(config.model, data.tables.vocab_size, bar_token_ids(data.tokenizer)))
    except CheckpointError:
        differ = _differences(theirs.model, config.model, "model") or ["other tensors"]
        raise CheckpointError(
            f"train.init_from {spec}: its weights do not fit this model ({'; '.join(differ)}); "
            f"use the model section of {source / CONFIG_FILE}"
        ) from None
    return path


def _differences(theirs: Section, ours: Section, prefix: str) -> list[str]:
    a, b = theirs.model_dump(mode="json"), ours.model_dump(mode="json")
    return [f"{prefix}.{key} {a[key]!r} there, {b[key]!r} here" for key in a if a[key] != b[key]]


def train(
    config: Config,
    run_dir: str | Path,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    profile_steps: tuple[int, int] | None = None,
    sample_hook: SampleHook | None = None,
) -> dict[str, float]:
    """Train a model as the config says (or continue the run in run_dir with resume=True).

    With a sample_hook (aurl.evaluation.during_training.TrainingSamples) and train.sample_interval set,
    pieces are written and measured as training goes.

    Returns the final train/valid metrics, the train split's unigram entropy and the parameter count.
    Under torchrun every rank calls this; rank 0 alone writes files and prints.
    """
    if not config.data.dataset:
        raise ConfigError(
            "data.dataset: not set; prepare data with `aurl prepare SOURCE --out DIR`, then --set data.dataset=DIR"
        )
    data = PreparedDataset(config.data.dataset)
    if settings_hash(config.tokenizer) != data.manifest.get("settings_hash", data.tokenizer_hash):
        raise ConfigError(
            f"tokenizer: {config.data.dataset} was prepared with other tokenizer settings; "
            "re-run `aurl prepare` with this --config"
        )
    token_type_weights(data.tokenizer, config.train.token_weights)  # a bad type name fails before any file is written
    run_dir = Path(run_dir)
    # One writer per run directory: rank 0 holds its lock (a refusal ends rank 0 before any collective,
    # and torchrun then stops the other ranks).
    with FolderLock(run_dir, "--run-dir", log) if DistEnv.from_environment().is_main else nullcontext():
        checkpoint = latest_good_checkpoint(run_dir, log) if resume else None
        source = None
        if config.train.init_from and not resume:
            config = sized_like(config, parse_init_from(config.train.init_from)[0] / CONFIG_FILE)
            source = source_checkpoint(config, data)
        if not resume:
            check_run_dir(run_dir, overwrite)  # on every rank alike, before any collective
        env, device = init_distributed(pick_device(config.train.device))
        try:
            if config.train.precision == "fp16" and device.type != "cuda":
                raise ConfigError(
                    f"train.precision: fp16 needs CUDA, but training runs on {device.type}; use bf16 or fp32"
                )
            if not resume:
                config = sized_on_ranks(config, data.tables.vocab_size, device, env, log)
            if env.is_main and not resume:
                prepare_run_dir(run_dir, overwrite)
                write_together(
                    {
                        run_dir / CONFIG_FILE: lambda tmp: tmp.write_text(config.to_yaml()),
                        run_dir / TOKENIZER_FILE: data.tokenizer.save,
                    }
                )
            elif env.is_main:
                remove_partial(run_dir / "checkpoints", log)
            barrier(env)  # the run directory exists before any rank goes on
            trainer = build_trainer(config, data, run_dir, env, device, progress, log, profile_steps, sample_hook)
            if checkpoint is not None:
                trainer.resume(checkpoint)
                log(f"resumed from {checkpoint} at step {trainer.step}")
            elif source is not None:
                trainer.checkpoints.load_weights(source)
                trainer.evaluate_first = True
                log(f"starting from the weights of {source} (a new optimizer and LR schedule, from step 0)")
            metrics = trainer.fit()
            barrier(env)  # no rank tears the group down while another still uses it (rank 0 saving)
        finally:
            shutdown(env)
    entropy = data.unigram_entropy("train")
    split, key = ("validation", "valid_loss") if "valid_loss" in metrics else ("training", "train_loss")
    log(
        f"final {split} loss {metrics.get(key, math.nan):.4f} nats/token "
        f"(unigram entropy of the training tokens: {entropy:.4f} nats/token)"
    )
    return {**metrics, "unigram_entropy": entropy, "parameters": float(trainer.num_parameters())}


def load_trained(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu"):
    """(config, tokenizer, model in eval mode) from a run directory: only the files generation needs."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"{run_dir}: not a run directory (no {CONFIG_FILE}); pass the --run-dir used by `aurl train`"
        )
    config = load_config(run_dir / CONFIG_FILE)
    tokenizer = load_tokenizer(run_dir)
    model = build_model(config.model, len(tokenizer), bar_token_ids(tokenizer))
    load_weights(resolve_checkpoint(run_dir, checkpoint), model)
    return config, tokenizer, model.to(torch.device(device)).eval()
