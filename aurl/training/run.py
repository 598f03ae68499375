"""`aurl train` as a function: config → prepared data → model → objective → Trainer, in a run directory."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from aurl.config import Config, load_config
from aurl.data.dataset import PreparedDataset, TokenBudgetBatchSampler, WindowDataset, batch_size_for
from aurl.data.tokenize import build_tokenizer, load_tokenizer, save_tokenizer, tokenizer_hash
from aurl.errors import CheckpointError, ConfigError
from aurl.models import build_model
from aurl.training.checkpoint import load_weights, resolve_checkpoint
from aurl.training.objectives import build_objective
from aurl.training.trainer import Trainer, pick_device, seed_everything

CONFIG_FILE = "config.yaml"


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: exists and is not a folder; choose another --run-dir")
    if (run_dir / "checkpoints").exists():
        if not overwrite:
            raise CheckpointError(
                f"{run_dir}: already holds a trained run; pass --overwrite to replace it or choose another --run-dir"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def train(
    config: Config,
    run_dir: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Train a model as the config says; returns final metrics (and the train split's unigram entropy)."""
    if not config.data.dataset:
        raise ConfigError(
            "data.dataset: not set; prepare data with `aurl prepare SOURCE --out DIR`, then --set data.dataset=DIR"
        )
    data = PreparedDataset(config.data.dataset)
    if tokenizer_hash(build_tokenizer(config.tokenizer)) != data.tokenizer_hash:
        raise ConfigError(
            f"tokenizer: {config.data.dataset} was prepared with other tokenizer settings; "
            "re-run `aurl prepare` with this --config"
        )
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir, overwrite)
    (run_dir / CONFIG_FILE).write_text(config.to_yaml())
    save_tokenizer(data.tokenizer, run_dir)

    cfg = config.train
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    seq_len = config.data.seq_len
    train_set = WindowDataset(data.pieces("train"), data.tables, seq_len, True, config.data.augment, cfg.seed)
    valid_set = WindowDataset(data.pieces("valid"), data.tables, seq_len, False)
    batch = batch_size_for(seq_len, cfg.batch_tokens, cfg.min_batch, cfg.max_batch)
    sampler = TokenBudgetBatchSampler(len(train_set), batch, shuffle=True, seed=cfg.seed)
    loader_args = {"num_workers": cfg.num_workers, "pin_memory": device.type == "cuda"}
    train_loader = DataLoader(train_set, batch_sampler=sampler, **loader_args)
    valid_loader = DataLoader(valid_set, batch_size=batch, shuffle=False, **loader_args)

    model = build_model(config.model, data.tables.vocab_size).to(device)
    entropy = data.unigram_entropy("train")
    log(
        f"model: {config.model.mode}, {model.num_parameters() / 1e6:.2f}M parameters on {device}; "
        f"data: {len(train_set)} train / {len(valid_set)} valid windows of {seq_len} tokens, batch {batch}"
    )
    trainer = Trainer(
        cfg,
        model,
        build_objective(config.model.mode, model),
        train_loader,
        valid_loader,
        run_dir,
        device,
        progress,
        log,
    )
    metrics = trainer.fit()
    log(
        f"final validation loss {metrics['valid_loss']:.4f} nats/token "
        f"(unigram entropy of the training tokens: {entropy:.4f} nats/token)"
    )
    return {**metrics, "unigram_entropy": entropy, "parameters": float(model.num_parameters())}


def load_trained(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu"):
    """(config, tokenizer, model in eval mode) from a run directory: only the files generation needs."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"{run_dir}: not a run directory (no {CONFIG_FILE}); pass the --run-dir used by `aurl train`"
        )
    config = load_config(run_dir / CONFIG_FILE)
    tokenizer = load_tokenizer(run_dir)
    model = build_model(config.model, len(tokenizer))
    load_weights(resolve_checkpoint(run_dir, checkpoint), model)
    return config, tokenizer, model.to(torch.device(device)).eval()
