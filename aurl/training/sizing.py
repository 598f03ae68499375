"""A transformer sized for the minutes it is given: with `train.max_minutes` set and no model size named,
aurl picks the rung of a ladder of shapes, the training window (data.seq_len) and the tokens a step
(train.batch_tokens) that a scaling law predicts reach the lowest validation loss in that time on this
machine. A window or batch the config names is kept; so is everything where it names a model size.

The split is Chinchilla's (Hoffmann et al. 2022): how loss falls with parameters N and training tokens D is
a law of the model and the data, fitted once from step-counted runs (`benchmarks/sizing.py --fit`, which
prints the constants kept in LAW); how many tokens each setting trains per second is a fact of the machine,
measured with a few training steps the first time it is needed and cached per machine (`throughputs`). D for
a budget is then the tokens that fit in its minutes (or in train.max_steps, where those come first).
"""

from __future__ import annotations

import itertools
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
CONTEXTS = (256, 512)  # the windows (data.seq_len) a budget chooses from where the config names none
BATCHES = (2048, 4096, 8192)  # the tokens a step (train.batch_tokens) it chooses from where the config names none
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
    """Validation loss (nats per token) after training N parameters on D tokens, b tokens a step, in windows
    of T tokens:

        L = E + A / N^alpha + B / D_eff^beta + C / T^gamma,   D_eff = D / (1 + b / noise)

    D_eff is McCandlish et al.'s (2018) empirical model of large-batch training: a batch far above the
    gradient noise scale (`noise`, in tokens) spends tokens that a smaller one would have turned into steps.
    C / T^gamma is what the window does to a token's loss at these budgets, either sign: a longer window gives
    each token more context (C > 0), a shorter one puts more windows, from more pieces, in every step (C < 0).
    Every other constant is zero or above."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float
    noise: float
    C: float
    gamma: float

    def loss(self, parameters: float, tokens: float, batch_tokens: float, seq_len: float) -> float:
        effective = tokens / (1 + batch_tokens / self.noise)
        return self.E + self.A / parameters**self.alpha + self.B / effective**self.beta + self.C / seq_len**self.gamma

    @classmethod
    def fit(cls, points: list[tuple[float, float, float, float, float]]) -> Law:
        """The law of least squares through (parameters, tokens, batch tokens, window, loss) points: L-BFGS from
        a grid of starts (Hoffmann et al. fit theirs the same way)."""
        data = torch.tensor(points, dtype=torch.float64)
        n, d, b, t, loss = data.unbind(1)
        best: tuple[float, torch.Tensor] | None = None
        for alpha, beta, gamma in itertools.product((0.2, 0.5, 1.0), (0.2, 0.5, 1.0), (0.3, 1.0)):
            # log E, log A, log alpha, log B, log beta, log noise, C, log gamma
            start = [math.log(loss.min().item() / 2), 5.0, math.log(alpha), 5.0, math.log(beta)]
            theta = torch.tensor([*start, math.log(4096.0), 0.0, math.log(gamma)], dtype=torch.float64)
            theta.requires_grad_(True)
            optimizer = torch.optim.LBFGS([theta], max_iter=500, line_search_fn="strong_wolfe")

            def error(theta: torch.Tensor = theta, optimizer: torch.optim.LBFGS = optimizer) -> torch.Tensor:
                optimizer.zero_grad()
                value = ((_law(theta, n, d, b, t) - loss) ** 2).sum()
                value.backward()
                return value

            optimizer.step(error)
            with torch.no_grad():
                value = float(((_law(theta, n, d, b, t) - loss) ** 2).sum())
            if math.isfinite(value) and (best is None or value < best[0]):
                best = (value, theta.detach().clone())
        if best is None:
            raise ValueError("no law with falling loss fits these points")
        constants = best[1].exp().tolist()
        constants[6] = float(best[1][6])  # C keeps its sign
        return cls(*constants)


def _law(theta: torch.Tensor, n, d, b, t) -> torch.Tensor:
    E, A, alpha, B, beta, noise, _, gamma = theta.exp()
    return E + A / n**alpha + B / (d / (1 + b / noise)) ** beta + theta[6] / t**gamma


# Fitted by `benchmarks/sizing.py --fit` on the Bach chorales with configs/demo.yaml (its task mix, bf16 here), 24
# runs: see docs/benchmarks.md, "Sized for the budget". Runs this short cannot place the floor E (it trades
# against C, whose small gamma makes the window's term about logarithmic); the law is for choosing between
# settings, not for quoting.
LAW = Law(E=6.150, A=604.0, alpha=0.604, B=141.9, beta=0.400, noise=3566.0, C=-6.626, gamma=0.01748)


def parameters(config: Config, shape: Shape, vocab_size: int) -> int:
    """The shape's parameter count, built on the meta device (nothing allocated)."""
    from aurl.modes import build_model

    with torch.device("meta"):
        return build_model(shape.applied(config).model, vocab_size).num_parameters()


@dataclass(frozen=True)
class Setting:
    """What the budget chooses: a rung, the training window and the tokens a step."""

    shape: Shape
    seq_len: int
    batch_tokens: int

    @property
    def name(self) -> str:
        return f"{self.shape.name} window {self.seq_len} batch {self.batch_tokens}"

    def applied(self, config: Config) -> Config:
        """The config with this setting; where the window is chosen, not named, a model context the config does
        not name becomes twice it (the demo's ratio: generation slides its window over a piece longer than the
        model was trained on)."""
        chosen_window = "seq_len" not in config.data.model_fields_set
        config = self.shape.applied(config)
        data = config.data.model_copy(update={"seq_len": self.seq_len})
        train = config.train.model_copy(update={"batch_tokens": self.batch_tokens})
        model = config.model
        if chosen_window and "context" not in config.model.model_fields_set:
            model = model.model_copy(update={"context": 2 * self.seq_len})
        return config.model_copy(update={"data": data, "train": train, "model": model})


def settings(config: Config) -> list[Setting]:
    """Every setting the budget may choose for this config, rung by rung: the windows and batches it names,
    else CONTEXTS and BATCHES, each only where the config stays valid with it (e.g. train.min_batch windows
    fit in the batch)."""
    windows = (config.data.seq_len,) if "seq_len" in config.data.model_fields_set else CONTEXTS
    batches = (config.train.batch_tokens,) if "batch_tokens" in config.train.model_fields_set else BATCHES
    out = []
    for shape, window, batch in itertools.product(LADDER, windows, batches):
        setting = Setting(shape, window, batch)
        try:
            Config.model_validate(setting.applied(config).model_dump())
        except ValueError:
            continue
        out.append(setting)
    return out


def machine_key(vocab_size: int, device: torch.device, precision: str) -> str:
    """What a throughput depends on besides the setting: the processor, threads, torch, device, precision,
    vocabulary."""
    processor = _processor()
    return (
        f"{processor} | {torch.get_num_threads()} threads | torch {torch.__version__} | {device.type} {precision} | "
        f"vocab {vocab_size}"
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
    minutes: float,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Tokens per second of the settings that could win `minutes` on this machine, from the cache where measured
    before. Rungs are measured upwards, and a setting only where the law, given the rate the rung below reached
    in it (a larger rung is no faster), could still beat the best setting measured so far: the choice is the
    one measuring everything would make, without timing rungs that cannot win."""
    key = machine_key(vocab_size, device, precision)
    table = _cached(cache)
    rates: dict[str, float] = dict(table.get(key, {}))
    measured = False
    best = math.inf
    below: dict[tuple[int, int], float] = {}  # (window, batch): the rate of the largest rung timed in it
    for shape, rung in itertools.groupby(settings(config), key=lambda setting: setting.shape):
        count = parameters(config, shape, vocab_size)
        for setting in rung:
            window_batch = (setting.seq_len, setting.batch_tokens)
            bound = choice(config, setting, count, below.get(window_batch, math.inf), minutes)
            if bound is None or bound.loss >= best:
                continue
            if setting.name not in rates:
                if not measured:
                    log(
                        "sizing: measuring training steps of model shapes, windows and batches on this machine "
                        f"(once; cached in {cache})"
                    )
                applied = setting.applied(config)
                rates[setting.name] = step_throughput(applied, shape, vocab_size, device, precision)
                measured = True
            below[window_batch] = rates[setting.name]
            chosen = choice(config, setting, count, rates[setting.name], minutes)
            best = min(best, chosen.loss if chosen else math.inf)
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
    setting: Setting
    parameters: int
    tokens: float
    rate: float  # tokens per second
    loss: float  # predicted


def choice(config: Config, setting: Setting, count: int, rate: float, minutes: float) -> Choice | None:
    """What the law predicts for a setting of `count` parameters training `rate` tokens a second for the
    minutes (or train.max_steps, where those end the run first); None where it takes fewer than MIN_STEPS."""
    cap = config.train.max_steps * setting.batch_tokens if config.train.max_steps else math.inf
    tokens = min(OVERHEAD * rate * minutes * 60, cap)
    if tokens < MIN_STEPS * setting.batch_tokens:
        return None
    return Choice(setting, count, tokens, rate, LAW.loss(count, tokens, setting.batch_tokens, setting.seq_len))


def candidates(config: Config, rates: dict[str, float], vocab_size: int, minutes: float) -> list[Choice]:
    """Each measured setting that takes MIN_STEPS steps in the budget, with what the law predicts for it."""
    counts: dict[Shape, int] = {}
    out = []
    for setting in settings(config):
        if setting.name not in rates:
            continue
        if setting.shape not in counts:
            counts[setting.shape] = parameters(config, setting.shape, vocab_size)
        option = choice(config, setting, counts[setting.shape], rates[setting.name], minutes)
        if option is not None:
            out.append(option)
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
    rates = throughputs(config, vocab_size, device, precision, cache, minutes, log)
    options = candidates(config, rates, vocab_size, minutes)
    if not options:
        smallest = settings(config)[0]
        log(
            f"sizing: no setting takes {MIN_STEPS} steps in {minutes:g} minutes here; "
            f"training the smallest model, {smallest.name}"
        )
        return smallest.applied(config)
    options.sort(key=lambda choice: choice.loss)
    best = options[0]
    runner_up = f"; next best {options[1].setting.name} at {options[1].loss:.3f}" if len(options) > 1 else ""
    shape = best.setting.shape
    log(
        f"sizing: model {shape.name} (d_model {shape.d_model}, {shape.n_layers} layers, "
        f"{best.parameters / 1e6:.2f}M parameters, lr {shape.lr:.2g}), windows of {best.setting.seq_len} tokens, "
        f"{best.setting.batch_tokens} tokens a step, for {minutes:g} minutes: {best.rate:,.0f} tokens/s here, "
        f"{best.tokens / 1e6:.2f}M tokens, predicted valid loss {best.loss:.3f}{runner_up} "
        "(set model.d_model, data.seq_len or train.batch_tokens to choose yourself)"
    )
    return best.setting.applied(config)


def sized_on_ranks(
    config: Config, vocab_size: int, device: torch.device, env: DistEnv, log: Callable[[str], None]
) -> Config:
    """`sized` as rank 0 decides it, the same setting on every rank under torchrun (each measuring its own
    steps could choose differently). Every rank holds the same config, so all skip or all take part."""
    if not budget_sizes(config):
        return config
    precision, _ = pick_precision(config.train.precision, device, env)
    chosen = sized(config, vocab_size, device, precision, cache_dir() / "sizing.json", log) if env.is_main else config
    options = settings(config)
    index = next((i for i, setting in enumerate(options) if env.is_main and setting.applied(config) == chosen), -1)
    (index,) = all_reduce_floats([float(index) if env.is_main else 0.0], env, device)
    return config if index < 0 else options[int(index)].applied(config)
