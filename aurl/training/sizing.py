"""A transformer sized for the minutes it is given: with `train.max_minutes` set and no model size named,
aurl picks the rung of a ladder of shapes that a scaling law predicts reaches the lowest validation loss in
that time on this machine.

The split is Chinchilla's (Hoffmann et al. 2022): how loss falls with parameters N and training tokens D is
a law of the model and the data, L(N, D) = E + A / N^alpha + B / D^beta, fitted once from step-counted runs
(`benchmarks/sizing.py --fit`, which prints the constants kept in LAW); how many tokens a shape trains per
second is a fact of the machine, measured with a few training steps per rung the first time it is needed and
cached per machine (`throughputs`). D for a budget is then the tokens that fit in its minutes (or in
train.max_steps, where those come first).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from aurl.config import Config, load_config
from aurl.data.corpus import cache_dir
from aurl.errors import WriteError
from aurl.files import write_together
from aurl.training.distributed import DistEnv, all_reduce_floats
from aurl.training.trainer import pick_precision

SIZE_FIELDS = ("d_model", "n_layers", "n_heads")  # naming any of them keeps the preset's size
MIN_STEPS = 100  # a rung that cannot take this many steps in the budget is not trained at all
OVERHEAD = 0.9  # the share of a budget spent on training steps (evaluation and samples take the rest)


@dataclass(frozen=True)
class Shape:
    """One rung: width, depth, heads, and the learning rate that goes with them, shrinking with width as
    1/sqrt(d_model) from the demo's 2e-3 at 256 wide."""

    d_model: int
    n_layers: int
    n_heads: int

    @property
    def lr(self) -> float:
        return 2e-3 * math.sqrt(256 / self.d_model)

    @property
    def name(self) -> str:
        return f"{self.d_model}x{self.n_layers}"

    def applied(self, config: Config) -> Config:
        """The config with this shape and its learning rate."""
        model = config.model.model_copy(
            update={"d_model": self.d_model, "n_layers": self.n_layers, "n_heads": self.n_heads}
        )
        train = config.train.model_copy(update={"lr": self.lr, "min_lr": min(config.train.min_lr, self.lr)})
        return config.model_copy(update={"model": model, "train": train})


LADDER = (
    Shape(128, 2, 4),
    Shape(192, 3, 4),
    Shape(256, 4, 4),
    Shape(384, 6, 6),
    Shape(512, 8, 8),
    Shape(768, 12, 12),
)


@dataclass(frozen=True)
class Law:
    """Validation loss (nats per token) after training N parameters on D tokens."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def loss(self, parameters: float, tokens: float) -> float:
        return self.E + self.A / parameters**self.alpha + self.B / tokens**self.beta

    @classmethod
    def fit(cls, points: list[tuple[float, float, float]]) -> Law:
        """The law of least squares through (parameters, tokens, loss) points: the exponents on a grid, the
        coefficients by least squares at each, none below zero (a loss floor E under zero, which a few points
        can pull it to, is held at zero)."""
        n, d, loss = (torch.tensor(column, dtype=torch.float64) for column in zip(*points, strict=True))
        best: tuple[float, Law] | None = None
        for alpha in torch.arange(0.05, 1.5, 0.01).tolist():
            for beta in torch.arange(0.05, 1.5, 0.01).tolist():
                design = torch.stack([torch.ones_like(n), n**-alpha, d**-beta], dim=1)
                coef = torch.linalg.lstsq(design, loss[:, None]).solution[:, 0]
                if coef[0] < 0:
                    coef = torch.cat(
                        [coef.new_zeros(1), torch.linalg.lstsq(design[:, 1:], loss[:, None]).solution[:, 0]]
                    )
                if (coef < 0).any():
                    continue
                error = float(((design @ coef - loss) ** 2).sum())
                if best is None or error < best[0]:
                    best = (error, cls(float(coef[0]), float(coef[1]), alpha, float(coef[2]), beta))
        if best is None:
            raise ValueError("no law with falling loss fits these points")
        return best[1]


# Fitted by `benchmarks/sizing.py --fit` on the Bach chorales with configs/demo.yaml (its task mix): 128x2, 192x3
# and 256x4 trained 150 and 450 steps of 4,096 tokens, 384x6 150 and 300 (docs/benchmarks.md, "Sized for the
# budget"). Runs this short cannot place the floor E; the law is for choosing between rungs, not for quoting.
LAW = Law(E=0.01289, A=2593.0, alpha=0.74, B=82.03, beta=0.32)


def parameters(config: Config, shape: Shape, vocab_size: int) -> int:
    """The shape's parameter count, built on the meta device (nothing allocated)."""
    from aurl.modes import build_model

    with torch.device("meta"):
        return build_model(shape.applied(config).model, vocab_size).num_parameters()


def machine_key(config: Config, vocab_size: int, device: torch.device, precision: str) -> str:
    """What a throughput depends on besides the shape: the processor, threads, torch, device, precision,
    window and batch, vocabulary."""
    processor = _processor()
    return (
        f"{processor} | {torch.get_num_threads()} threads | torch {torch.__version__} | {device.type} {precision} | "
        f"seq {config.data.seq_len} batch {config.train.batch_tokens} tokens | vocab {vocab_size}"
    )


def _processor() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def step_throughput(config: Config, shape: Shape, vocab_size: int, device: torch.device, precision: str) -> float:
    """Tokens per second of this shape's training step (forward, backward, AdamW) on random tokens, the best
    of a few after one that warms up."""
    from aurl.modes import build_model

    seq_len = config.data.seq_len
    batch = max(1, config.train.batch_tokens // seq_len)
    generator = torch.Generator().manual_seed(0)
    model = build_model(shape.applied(config).model, vocab_size).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(vocab_size, (batch, seq_len + 1), generator=generator).to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return batch * seq_len / best


def throughputs(
    config: Config,
    vocab_size: int,
    device: torch.device,
    precision: str,
    cache: Path,
    seconds: float,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Tokens per second of each rung on this machine, from the cache where measured before; rungs are
    measured in order until one could not take MIN_STEPS steps in `seconds` (the larger ones would not
    either)."""
    key = machine_key(config, vocab_size, device, precision)
    table = _cached(cache)
    rates: dict[str, float] = dict(table.get(key, {}))
    measured = False
    for shape in LADDER:
        if shape.name not in rates:
            if not measured:
                log(f"sizing: measuring training steps of each model shape on this machine (once; cached in {cache})")
            rates[shape.name] = step_throughput(config, shape, vocab_size, device, precision)
            measured = True
        if rates[shape.name] * seconds < MIN_STEPS * config.train.batch_tokens:
            break
    if measured:
        table[key] = rates
        try:  # a cache that cannot be written costs the next run its measuring, never this run
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_together({cache: lambda tmp: tmp.write_text(json.dumps(table, indent=1))})
        except (OSError, WriteError) as err:
            log(f"sizing: could not keep the measurements in {cache} ({err}); the next run measures again")
    return rates


def _cached(cache: Path) -> dict:
    """The cached table; an unreadable or mangled file counts as none (it is measured and written again)."""
    try:
        table = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


@dataclass(frozen=True)
class Choice:
    shape: Shape
    parameters: int
    tokens: float
    rate: float  # tokens per second
    loss: float  # predicted


def candidates(config: Config, rates: dict[str, float], vocab_size: int, minutes: float) -> list[Choice]:
    """Each measured rung that takes MIN_STEPS steps in the budget, with what the law predicts for it."""
    batch_tokens = config.train.batch_tokens
    cap = config.train.max_steps * batch_tokens if config.train.max_steps else math.inf
    out = []
    for shape in LADDER:
        rate = rates.get(shape.name)
        if rate is None:
            continue
        tokens = min(OVERHEAD * rate * minutes * 60, cap)
        if tokens < MIN_STEPS * batch_tokens:
            continue
        count = parameters(config, shape, vocab_size)
        out.append(Choice(shape, count, tokens, rate, LAW.loss(count, tokens)))
    return out


def size_named(config: Config) -> bool:
    return bool(set(SIZE_FIELDS) & config.model.model_fields_set)


def sized_like(config: Config, source_config: Path) -> Config:
    """Fine-tuning (train.init_from) with no size named: the size of the run it starts from, read from that
    run's config file (where there is none, the config stays as it is and the source's check says why)."""
    if size_named(config) or not source_config.is_file():
        return config
    theirs = load_config(source_config).model
    model = config.model.model_copy(update={field: getattr(theirs, field) for field in SIZE_FIELDS})
    return config.model_copy(update={"model": model})


def budget_sizes(config: Config) -> bool:
    """Whether train.max_minutes decides the model's size: a plain transformer that names no size and starts
    from no other run's weights."""
    return (
        config.train.max_minutes is not None
        and not size_named(config)
        and config.model.mode == "transformer"
        and not config.train.init_from
    )


def sized(
    config: Config,
    vocab_size: int,
    device: torch.device,
    precision: str,
    cache: Path,
    log: Callable[[str], None] = print,
) -> Config:
    """The config with its model sized for train.max_minutes, where the budget decides its size (else as it
    is)."""
    if not budget_sizes(config):
        return config
    minutes = config.train.max_minutes
    rates = throughputs(config, vocab_size, device, precision, cache, minutes * 60 * OVERHEAD, log)
    options = candidates(config, rates, vocab_size, minutes)
    if not options:
        smallest = LADDER[0]
        log(
            f"sizing: no shape takes {MIN_STEPS} steps in {minutes:g} minutes here; "
            f"training the smallest, {smallest.name}"
        )
        return smallest.applied(config)
    options.sort(key=lambda choice: choice.loss)
    best = options[0]
    runner_up = f"; next best {options[1].shape.name} at {options[1].loss:.3f}" if len(options) > 1 else ""
    log(
        f"sizing: model {best.shape.name} (d_model {best.shape.d_model}, {best.shape.n_layers} layers, "
        f"{best.parameters / 1e6:.2f}M parameters, lr {best.shape.lr:.2g}) for {minutes:g} minutes: "
        f"{best.rate:,.0f} tokens/s here, {best.tokens / 1e6:.2f}M tokens, predicted valid loss {best.loss:.3f}"
        f"{runner_up} (set model.d_model to choose yourself)"
    )
    return best.shape.applied(config)


def sized_on_ranks(
    config: Config, vocab_size: int, device: torch.device, env: DistEnv, log: Callable[[str], None]
) -> Config:
    """`sized` as rank 0 decides it, the same rung on every rank under torchrun (each measuring its own
    steps could choose differently). Every rank holds the same config, so all skip or all take part."""
    if not budget_sizes(config):
        return config
    precision, _ = pick_precision(config.train.precision, device, env)
    chosen = sized(config, vocab_size, device, precision, cache_dir() / "sizing.json", log) if env.is_main else config
    rung = next(
        (i for i, shape in enumerate(LADDER) if chosen is not config and shape.d_model == chosen.model.d_model), -1
    )
    (rung,) = all_reduce_floats([float(rung) if env.is_main else 0.0], env, device)
    return config if rung < 0 else LADDER[int(rung)].applied(config)
