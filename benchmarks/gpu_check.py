"""The CUDA paths in one command: what the CPU tests cannot reach, checked on a GPU in about 5 minutes.

    make venv TORCH=torch==2.13.0+cu126 && .venv/bin/python benchmarks/gpu_check.py

Prints one table, a row per check (ok, FAIL with the error, or skip with why), and exits 1 if a check
failed. Without CUDA it prints one line saying so and exits 0. Each check is a function below whose doc
says what it checks; they share a small synthetic corpus and go through the project's own APIs
(aurl.data.prepare.prepare, aurl.training.run.train with --set style overrides, aurl.generation.requests
.generate), comparing as the CPU tests do: a resumed run against an uninterrupted one, torchrun against one
process, the same seed twice. `--cpu` runs the checks that do not need CUDA on the CPU, to try this script
where there is no GPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import symusic
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
MFU_TARGET = 0.40
# Dense bf16 tensor-core peaks from the vendors' datasheets (FLOP/s, no sparsity), matched against the
# device name in this order; another GPU's peak is measured (a large bf16 matrix product).
BF16_PEAKS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
)


class Skip(Exception):
    """A check that does not apply here (one GPU for torchrun, no C++ compiler for compiled decoding)."""


class Bench:
    """What the checks share: the device, a work folder, the synthetic corpus prepared once, the runs."""

    def __init__(self, device: torch.device, work: Path):
        self.device, self.work = device, work
        self.data = work / "data"
        self.runs: dict[str, Path] = {}
        self.results: dict[str, dict[str, float]] = {}  # what train() returned for each run

    def config(self, *sets: str):
        from aurl.config import load_config

        base = [f"data.dataset={self.data}", f"train.device={self.device.type}", "train.peak_flops=1e12"]
        return load_config(TINY, [*base, *sets])

    def train(self, name: str, *sets: str, log: Callable[[str], None] | None = None) -> Path:
        """A run of the tiny config (with `sets`) in work/name; returns its run directory."""
        from aurl.training.run import train

        run = self.work / name
        self.results[name] = train(self.config(*sets), run, overwrite=True, progress=False, log=log or (lambda s: None))
        self.runs[name] = run
        return run


def metrics(run: Path, split: str = "train") -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [m for m in lines if m["split"] == split]


def losses(run: Path) -> dict[tuple[int, str], float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {(m["step"], m["split"]): m["loss"] for m in lines if m["split"] in ("train", "valid")}


def write_corpus(folder: Path, files: int = 48, bars: int = 48) -> None:
    """Two-track pieces on an eighth-note grid (melody and bass), different for each seed."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(files):
        rng = np.random.default_rng(seed)
        score = symusic.Score(480)
        score.tempos.append(symusic.Tempo(0, 110.0))
        score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
        for program, low in ((0, 60), (33, 36)):
            track = symusic.Track(program=program)
            t = 0
            while t < bars * 4 * 480:
                dur = int(rng.choice([240, 480, 960]))
                track.notes.append(symusic.Note(t, dur, low + int(rng.integers(0, 12)), 90))
                t += dur
            score.tracks.append(track)
        score.dump_midi(str(folder / f"piece_{seed:03d}.mid"))


# ---- the checks, in the order of the table --------------------------------------------------------------


def check_precision(c: Bench, precision: str) -> str:
    """Ten training steps at `precision` on the GPU: every logged loss finite, the last below the first."""
    run = c.train(
        f"precision_{precision}", f"train.precision={precision}", "train.max_steps=10", "train.log_interval=1"
    )
    lines = metrics(run)
    first, last = lines[0]["loss"], lines[-1]["loss"]
    assert all(math.isfinite(m["loss"]) for m in lines), "a non-finite loss was logged"
    assert last < first, f"loss did not fall: {first:.3f} -> {last:.3f}"
    return f"loss {first:.3f} -> {last:.3f}, {lines[-1]['tokens_per_s']:,.0f} tokens/s"


def check_fp16_scaler(c: Bench) -> str:
    """fp16 with GradScaler: the scaler starts at 2^32 (PyTorch's default is 2^16), so the first steps'
    scaled gradients overflow fp16 (the logits' alone reach ~1e-3 x 2^32); those steps are skipped and
    counted (skipped_steps), the scale halves each time, and training goes on with finite, falling losses."""
    if c.device.type != "cuda":
        raise Skip("fp16 needs CUDA")
    scaler = functools.partial(torch.amp.GradScaler, init_scale=2.0**32)
    with mock.patch("torch.amp.GradScaler", scaler):  # the Trainer builds torch.amp.GradScaler(...)
        run = c.train(
            "fp16",
            "train.precision=fp16",
            "train.max_steps=24",
            "train.log_interval=1",
            "train.stability.nan_patience=30",
        )
    lines = metrics(run)
    skipped = lines[-1]["skipped_steps"]
    assert skipped >= 1, "no step was skipped: the scaler never saw an overflow"
    assert math.isfinite(lines[-1]["loss"]), "the last loss is not finite"
    stepped = [m["loss"] for m in lines if math.isfinite(m["loss"]) and m["loss"] > 0]
    assert stepped[-1] < stepped[0], f"loss did not fall: {stepped[0]:.3f} -> {stepped[-1]:.3f}"
    return f"{skipped:.0f} step(s) skipped by the scaler, then loss {stepped[0]:.3f} -> {stepped[-1]:.3f}"


def check_memory_figures(c: Bench) -> str:
    """metrics.jsonl's train lines hold the CUDA allocator's figures (allocated, reserved, peak; MB)."""
    if c.device.type != "cuda":
        raise Skip("CUDA memory figures need CUDA")
    last = metrics(c.runs["precision_fp32"])[-1]
    keys = ("mem_allocated_mb", "mem_reserved_mb", "mem_peak_allocated_mb")
    missing = [k for k in keys if not last.get(k, 0) > 0]
    assert not missing, f"missing or zero in metrics.jsonl: {', '.join(missing)}"
    return ", ".join(f"{k.removeprefix('mem_').removesuffix('_mb')} {last[k]:,.0f} MB" for k in keys)


def check_batch_probe(c: Bench) -> str:
    """train.batch_probe meets a real out-of-memory and settles: this process may use 10% of the GPU
    (torch.cuda.set_per_process_memory_fraction) while the probe aims at 5% of it, so large micro-batches
    of 2,048-token windows raise torch.OutOfMemoryError; the probe halves to one that fits, training
    accumulates the rest, and both steps run."""
    if c.device.type != "cuda":
        raise Skip("the batch probe runs on CUDA only")
    said: list[str] = []
    torch.cuda.empty_cache()
    ooms = torch.cuda.memory_stats(c.device).get("num_ooms", 0)
    torch.cuda.set_per_process_memory_fraction(0.10, c.device)
    try:
        run = c.train(
            "probe",
            *("model.d_model=512", "model.n_layers=8", "model.n_heads=8", "model.context=2048"),
            *("data.seq_len=2048", "train.precision=bf16", "train.batch_probe=true"),
            *("train.probe_memory_fraction=0.05", "train.batch_tokens=524288", "train.max_batch=256"),
            *("train.min_batch=1", "train.max_steps=2", "train.log_interval=1"),
            log=said.append,
        )
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, c.device)
        torch.cuda.empty_cache()
    met = torch.cuda.memory_stats(c.device).get("num_ooms", 0) - ooms
    probe = next((line for line in said if line.startswith("batch probe")), "")
    assert met >= 1, f"the probe met no out-of-memory error ({probe or 'no probe line'})"
    assert probe, "the probe did not shrink the micro-batch"
    lines = metrics(run)
    assert [m["step"] for m in lines] == [1, 2] and all(math.isfinite(m["loss"]) for m in lines)
    return f"{met} out-of-memory error(s), then {probe.removeprefix('batch probe: ')}; 2 steps trained"


def check_torchrun(c: Bench) -> str:
    """torchrun with nccl, one process per GPU found, trains as one process with the same global batch
    (each rank 1 window x 2 accumulated micro-batches against 2 x ranks windows at once): equal losses."""
    gpus = torch.cuda.device_count() if c.device.type == "cuda" else 0
    if gpus < 2:
        raise Skip(f"{gpus} GPU(s): nccl needs one GPU per rank and two ranks at least")
    common = ["train.max_steps=8", "train.eval_interval=4", "train.min_batch=1", "train.eval_batches=1000"]
    common += ["train.log_interval=1"]
    single = c.train("single", *common, f"train.batch_tokens={64 * 2 * gpus}", f"train.max_batch={2 * gpus}")
    ranks = c.work / "torchrun"
    sets = [f"data.dataset={c.data}", "train.device=cuda", "train.peak_flops=1e12", *common]
    sets += ["train.batch_tokens=64", "train.max_batch=1", "train.grad_accum=2", "train.strategy=ddp"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    cmd += ["-m", "aurl", "train", "--config", str(TINY), "--run-dir", str(ranks), "--no-progress", "--overwrite"]
    cmd += [x for s in sets for x in ("--set", s)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-1500:]
    one, many = losses(single), losses(ranks)
    assert sorted(one) == sorted(many), "the runs logged different steps"
    worst = max(abs(one[k] - many[k]) for k in one)
    assert worst < 1e-4, f"losses differ by up to {worst:.2g}"
    return f"{gpus} ranks (nccl) vs 1 process: 8 steps, losses within {worst:.1g}"


def check_resume(c: Bench) -> str:
    """Exact resume on the GPU: a run stopped after its step-4 checkpoint (later checkpoints removed, as a
    kill leaves it) and resumed logs bit for bit the train and valid losses of the uninterrupted run
    (train.deterministic, dropout on)."""
    sets = ["train.max_steps=8", "train.save_interval=2", "train.eval_interval=4", "train.log_interval=1"]
    sets += ["train.keep_last=10", "train.deterministic=true", "model.dropout=0.1"]
    whole = c.train("whole", *sets)
    killed = c.work / "killed"
    shutil.rmtree(killed, ignore_errors=True)
    shutil.copytree(whole, killed)
    for name in ("step_6", "step_8"):
        shutil.rmtree(killed / "checkpoints" / name)
    from aurl.training.run import resume_config, train

    train(resume_config(killed), killed, resume=True, progress=False, log=lambda s: None)
    mine, theirs = losses(killed), losses(whole)
    assert mine == theirs, f"resumed losses differ: {mine} vs {theirs}"
    return f"steps 5-8 resumed from step_4: {len(mine)} losses equal bit for bit"


def _same_seed_twice(run_or_trained, out: Path, **settings) -> str:
    """Two generations with one seed: their MIDI files are asserted equal; says what was written."""
    from aurl.generation.requests import generate

    takes = []
    for i in range(2):
        start = time.perf_counter()
        samples = generate(run_or_trained, out / str(i), log=None, seed=7, num=2, max_tokens=128, **settings)
        seconds = time.perf_counter() - start
        takes.append([s.midi.read_bytes() for s in samples])
    assert takes[0] == takes[1], "the same seed gave different samples"
    return f"{len(samples)} samples ({sum(s.tokens for s in samples)} tokens) twice alike, {seconds:.1f} s each"


def check_generation(c: Bench) -> str:
    """Generation as `aurl generate` runs it (on the CPU, with the KV cache) from the fp32 GPU-trained run:
    the same seed gives the same MIDI files."""
    return _same_seed_twice(c.runs["precision_fp32"], c.work / "gen_cpu")


def check_compiled(c: Bench) -> str:
    """Compiled decoding (generation.fast, where it applies: the CPU, float32, full attention): the same
    seed gives the same MIDI files."""
    from aurl.generation.generate import Trained

    trained = Trained.load(c.runs["precision_fp32"], compiled=True)
    if not trained.compiled:
        raise Skip("compiled decoding does not apply here (see the log of aurl.generation.fast)")
    alike = _same_seed_twice(trained, c.work / "gen_compiled")
    assert trained.compiled, "compiling failed while decoding; it decoded eagerly"
    return alike


def check_generation_on_gpu(c: Bench) -> str:
    """Generation on the GPU, as training's samples run it (TrainingSamples: the model on its device, a
    generator and the grammar there): a KV-cached step's logits equal a full forward's (fp32, to 1e-4),
    and two sample rounds with the run's seed write the same MIDI files."""
    if c.device.type != "cuda":
        raise Skip("needs CUDA")
    from aurl.evaluation.during_training import TrainingSamples
    from aurl.training.run import load_trained, resume_config

    run = c.runs["precision_fp32"]
    _, _, model = load_trained(run, device=str(c.device))
    ids = torch.randint(0, model.embed.num_embeddings, (2, 64), device=c.device)
    with torch.inference_mode():
        full = model(ids)[:, -1]
        cache = model.new_cache(2)
        model(ids[:, :-1], cache)
        cached = model(ids[:, -1:], cache)[:, -1]
    worst = float((full - cached).abs().max())
    assert worst < 1e-4, f"cached logits differ from a full forward by {worst:.2g}"
    hook = TrainingSamples(resume_config(run, ["train.sample_tokens=128"]), run)
    start = time.perf_counter()
    for step in (1001, 1002):
        hook(step, model)
    seconds = (time.perf_counter() - start) / 2
    takes = [sorted((run / "samples" / f"step_{step}").glob("*.mid")) for step in (1001, 1002)]
    assert takes[0], "no samples were written"
    assert [f.read_bytes() for f in takes[0]] == [f.read_bytes() for f in takes[1]], "one seed, other samples"
    return f"cached vs full logits within {worst:.1g}; {len(takes[0])} samples twice alike, {seconds:.1f} s each"


def bf16_peak(device: torch.device) -> tuple[float, str]:
    name = torch.cuda.get_device_name(device)
    for key, flops in BF16_PEAKS:
        if key in name:
            return flops, f"{name} dense bf16 peak {flops / 1e12:,.0f} TFLOP/s (datasheet)"
    from aurl.training.monitor import measure_peak_flops

    flops = measure_peak_flops(device, torch.bfloat16, 8192)
    return flops, f"{name} bf16 peak {flops / 1e12:,.0f} TFLOP/s (measured: a large matrix product)"


def check_mfu(c: Bench) -> str:
    """MFU of a ~100M-parameter transformer (d_model 1024, 8 layers) in bf16 at length 2,048, compiled,
    32 windows a step, as the Trainer measures it (Transformer.flops_per_token) over steps 21-30, against
    the GPU's dense bf16 peak; target >= 40%."""
    if c.device.type != "cuda":
        raise Skip("needs CUDA")
    peak, named = bf16_peak(c.device)
    run = c.train(
        "mfu",
        *("model.d_model=1024", "model.n_layers=8", "model.n_heads=16", "model.context=2048"),
        *("data.seq_len=2048", "train.precision=bf16", "train.compile=true"),
        *("train.batch_tokens=65536", "train.min_batch=32", "train.max_batch=32", "train.max_steps=30"),
        *("train.log_interval=10", "train.eval_interval=1000", "train.save_interval=1000"),
        f"train.peak_flops={peak}",
    )
    last, params = metrics(run)[-1], c.results["mfu"]["parameters"]
    summary = f"{last['mfu']:.1%} of {named}; {last['tokens_per_s']:,.0f} tokens/s, ~{params / 1e6:.0f}M parameters"
    assert last["mfu"] >= MFU_TARGET, f"below the {MFU_TARGET:.0%} target: {summary}"
    return summary


CHECKS: list[tuple[str, Callable[[Bench], str]]] = [
    ("train fp32", functools.partial(check_precision, precision="fp32")),
    ("train bf16", functools.partial(check_precision, precision="bf16")),
    ("train fp16 + GradScaler, a skipped step", check_fp16_scaler),
    ("CUDA memory in metrics.jsonl", check_memory_figures),
    ("batch probe meets a real OOM", check_batch_probe),
    ("torchrun nccl = one process", check_torchrun),
    ("exact resume", check_resume),
    ("generation, KV cache (CPU, as aurl generate)", check_generation),
    ("compiled decoding, same seed", check_compiled),
    ("generation on the GPU (training samples)", check_generation_on_gpu),
    ("MFU ~100M bf16 at 2,048", check_mfu),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run the checks that do not need CUDA on the CPU")
    parser.add_argument("--work", metavar="DIR", help="keep the corpus and runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu:
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(f"gpu_check: no CUDA GPU here (torch {torch.__version__}, {build}); nothing checked")
        return 0
    from aurl.config import load_config
    from aurl.data.prepare import prepare

    # Deterministic cuBLAS kernels (train.deterministic: the resume check) need this before the first one runs.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    start = time.perf_counter()
    device = torch.device("cpu" if args.cpu else "cuda")
    work = Path(args.work or tempfile.mkdtemp(prefix="aurl-gpu-check-"))
    check = Bench(device, work)
    write_corpus(work / "midi")
    prepare(str(work / "midi"), check.data, load_config(TINY), workers=4, progress=False, log=lambda s: None)

    rows = []
    for name, fn in CHECKS:
        began = time.perf_counter()
        try:
            result, figures = "ok", fn(check)
        except Skip as why:
            result, figures = "skip", str(why)
        except Exception as err:  # a failed check is a row of the table, and the others still run
            result, figures = "FAIL", f"{type(err).__name__}: {err}".splitlines()[0][:300]
            traceback.print_exc(file=sys.stderr)
        rows.append((name, result, figures, time.perf_counter() - began))

    where = "CPU (--cpu)" if args.cpu else f"{torch.cuda.get_device_name(device)} x {torch.cuda.device_count()}"
    print(
        f"gpu_check on {where}, torch {torch.__version__}, CUDA {torch.version.cuda}: "
        f"{time.perf_counter() - start:.0f} s in all; work folder {work}"
    )
    width = max(len(name) for name, *_ in rows)
    print(f"| {'check':<{width}} | result | {'seconds':>7} | figures |")
    print(f"|{'-' * (width + 2)}|--------|---------|---------|")
    for name, result, figures, seconds in rows:
        print(f"| {name:<{width}} | {result:<6} | {seconds:7.1f} | {figures} |")
    return 1 if any(result == "FAIL" for _, result, *_ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
