"""The line every benchmark prints to say what it ran on: the processor, its bf16 units, threads and torch."""

from __future__ import annotations

import platform
import subprocess

import torch


def machine() -> str:
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), "")
    flags = next((line for line in lines if line.startswith("Flags")), "").split()
    units = ", ".join(flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags) or "no bf16 units"
    return f"{model or platform.processor()} ({units}), {torch.get_num_threads()} threads, torch {torch.__version__}"
