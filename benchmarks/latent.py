"""The latent presets on the Bach chorales: train configs/vae.yaml or configs/vae_gan.yaml and report.

Prints the training time, the validation reconstruction token accuracy (teacher-forced, z = mu), the KL
beside its free-bits floor, the share of active latent units, non-finite steps, the critic's accuracy
after the adversarial warm-up (vae_gan), and the notes in samples drawn from the prior.

Run: .venv/bin/python benchmarks/latent.py --config configs/vae.yaml --data data/bach-chorales
     (--existing RUN reports on a run already trained with that config instead of training again)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from aurl.config import load_config
from aurl.generation.requests import generate
from aurl.training.run import train


def report(run: Path, seconds: float | None, preset: Path) -> None:
    config = load_config(run / "config.yaml")
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [m for m in log if m["split"] == "valid"][-1]
    train_log = [m for m in log if m["split"] == "train"]
    floor = config.vae.free_bits * config.model.latent_dim
    rows = [
        ("training time (s)", f"{seconds:.0f}" if seconds is not None else "see the training log"),
        ("steps", str(valid["step"])),
        ("valid reconstruction token accuracy", f"{valid['accuracy']:.1%}"),
        ("valid reconstruction loss (nats/token)", f"{valid['recon']:.3f}"),
        ("valid KL (nats) / free-bits floor", f"{valid['kl']:.2f} / {floor:.2f}"),
        (
            "active latent units",
            f"{valid['active_units']:.1f} of {config.model.latent_dim}"
            f" ({valid['active_units'] / config.model.latent_dim:.0%})",
        ),
        ("non-finite (skipped) steps", str(int(train_log[-1].get("skipped_steps", 0)))),
    ]
    if config.model.mode == "vae_gan":
        after = [m["critic_accuracy"] for m in train_log if m["step"] > config.gan.adv_start + config.gan.adv_warmup]
        if after:
            rows.append(
                (
                    "critic accuracy after warm-up: min / median / max",
                    f"{min(after):.2f} / {statistics.median(after):.2f} / {max(after):.2f}",
                )
            )
        rows.append(("valid critic accuracy", f"{valid['critic_accuracy']:.2f}"))
    with tempfile.TemporaryDirectory() as out:
        settings = load_config(preset).generate.model_dump()  # the preset's sampling settings as they are now
        samples = generate(run, out, "best", log=lambda s: None, **{**settings, "num": 4, "seed": 0})
    rows.append(("notes in 4 prior samples", ", ".join(str(s.notes) for s in samples)))
    width = max(len(name) for name, _ in rows)
    print(f"{config.model.mode} preset, run {run}")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/vae.yaml")
    parser.add_argument("--data", default="data/bach-chorales")
    parser.add_argument("--run-dir", help="where to train (default: a temporary folder under runs/)")
    parser.add_argument("--existing", metavar="RUN", help="report on this trained run instead of training")
    args = parser.parse_args()
    if args.existing:
        return report(Path(args.existing), None, Path(args.config))
    config = load_config(args.config, [f"data.dataset={args.data}"])
    Path("runs").mkdir(exist_ok=True)
    run = Path(args.run_dir or tempfile.mkdtemp(prefix=f"bench-{config.name}-", dir="runs"))
    start = time.perf_counter()
    train(config, run, overwrite=True, progress=False, log=lambda s: None)
    report(run, time.perf_counter() - start, Path(args.config))


if __name__ == "__main__":
    main()
