"""Every random generator training draws from (Python's, NumPy's, torch's on the CPU and CUDA): seeded here
alone, and captured into checkpoints here alone.

Each rank draws a stream of its own (seed + rank), so that ranks draw different dropout masks as one process
does for its micro-batches; what must start the same on every rank (the initial weights, the vae_gan critic)
is built inside `alike()`. A checkpoint keeps every rank's generators, so a resumed run draws exactly what
the uninterrupted one would have.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from aurl.training.distributed import DistEnv


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CUDA's generators too


def _capture() -> dict[str, Any]:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        # NumPy's key as a tensor: torch.load(weights_only=True) reads tensors and plain containers only
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "gauss": (has_gauss, gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _restore(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], *numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomState:
    """Seeds this rank's generators on creation (once per run); saves and restores them with a checkpoint."""

    def __init__(self, seed: int, env: DistEnv):
        self.seed, self.env = seed, env
        _seed(seed + env.rank)

    @contextmanager
    def alike(self) -> Iterator[None]:
        """Draws inside start from the run's seed on every rank; this rank's own stream goes on after."""
        own = _capture()
        _seed(self.seed)
        try:
            yield
        finally:
            _restore(own)

    def state_dict(self) -> dict[str, Any]:
        """This process's generators; under torchrun every rank's (a collective: every rank calls it)."""
        state = _capture()
        if not self.env.enabled:
            return state
        ranks: list[Any] = [None] * self.env.world_size
        dist.all_gather_object(ranks, state)
        return {"ranks": ranks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _restore(state["ranks"][self.env.rank] if "ranks" in state else state)
