"""Checkpoints: written atomically with a sha256 manifest, named by `latest`/`best`, pruned by retention.

A checkpoint is `checkpoints/step_<N>/` holding `model.safetensors` (weights only: all that generation
needs, nothing unpickled), `trainer_state.pt` and `manifest.json` (sha256 of each file, metrics, versions).
It is written to a temporary folder and renamed into place, so a crash never leaves half a checkpoint; a
failed write removes its temporary folder, and one a killed process left behind is removed when the run
resumes (see remove_partial).

`trainer_state.pt` is the trainer's state_dict, as torchtitan's CheckpointManager keeps one: the loop's
position (step, seconds, micro_batches, windows_seen) and one entry per component, each written and read by
the component itself (optimizer, scheduler, scaler, validation, stability, rng, and objective where it has
state). Checkpointer saves and loads it beside the weights without knowing what any entry holds.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, load_model
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

import aurl
from aurl.errors import CheckpointError
from aurl.files import write_together, writing
from aurl.training.distributed import DistEnv, unwrap

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
MANIFEST_FILE = "manifest.json"
POINTERS = ("latest", "best")
# trainer_state.pt's layout. 2: one entry per component. 1 (no "format" key): the trainer's fields side by
# side, read by upgrading it (see _from_format_1).
STATE_FORMAT = 2
# Full tensors on the CPU, whether the model is replicated (DDP) or sharded (FSDP): any world size resumes.
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_pointer(folder: Path, name: str, target: str) -> None:
    write_together({folder / name: lambda tmp: tmp.write_text(target + "\n")})


def _remove(path: Path) -> None:
    """Rename a step folder out of the step_N names before deleting it, so that a kill half-way leaves a
    temporary folder (removed on resume), never a step folder with files missing."""
    trash = path.with_name(f".{path.name}-removed")
    path.rename(trash)
    shutil.rmtree(trash)


def tied_names(model: nn.Module) -> set[str]:
    """State-dict names that repeat a parameter listed earlier (a tied weight): saved once, under its first name."""
    first: dict[int, str] = {}
    tied = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            tied.add(name)
        else:
            first[id(tensor)] = name
    return tied


def save_checkpoint(
    folder: Path,
    step: int,
    weights: dict[str, torch.Tensor],  # full state dict, each tensor once (see tied_names)
    state: dict[str, Any],
    metrics: dict[str, float],
    best: bool,
) -> Path:
    """Write checkpoints/step_<step> atomically, point `latest` (and `best`) at it, return its path."""
    final = folder / f"step_{step}"
    with writing(final):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".step_{step}-", dir=folder))
        try:
            # Both written through Python file objects: a full disk is then an OSError with its errno
            # (torch.save to a path says only "unexpected pos", safetensors' save_file a SafetensorError).
            tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
            with open(tmp / MODEL_FILE, "wb") as fh:
                fh.write(safetensors_bytes(tensors))
            with open(tmp / STATE_FILE, "wb") as fh:
                try:
                    torch.save({"format": STATE_FORMAT, **state}, fh)
                except RuntimeError as err:  # its zip writer, closed after a failed write, hides the OSError
                    if isinstance(err.__context__, OSError):
                        raise err.__context__ from None
                    raise
            manifest = {
                "step": step,
                "metrics": metrics,
                "files": {name: _sha256(tmp / name) for name in (MODEL_FILE, STATE_FILE)},
                "versions": {"aurl": aurl.__version__, "torch": torch.__version__, "python": platform.python_version()},
            }
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
            if final.exists():
                _remove(final)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _write_pointer(folder, "latest", final.name)
    if best:
        _write_pointer(folder, "best", final.name)
    return final


def prune_checkpoints(folder: Path, keep_last: int) -> None:
    """Delete step folders beyond the newest `keep_last`, never the ones `latest` or `best` name."""
    protected = {(folder / name).read_text().strip() for name in POINTERS if (folder / name).is_file()}
    for path in steps_newest_first(folder)[keep_last:]:
        if path.name not in protected:
            _remove(path)


def remove_partial(folder: Path, log: Callable[[str], None] = print) -> None:
    """Delete what an interrupted write or deletion left in checkpoints/ (temporary folders and pointer
    files). Only for the one process writing the run (it holds the run directory's lock)."""
    for path in sorted(folder.glob(".*")):
        log(f"note: removing {path}, left half-written by an interrupted run")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def resolve_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """`best`, `latest` or `step_N` of a run directory, as a checkpoint folder path."""
    folder = Path(run_dir) / "checkpoints"
    if which in POINTERS:
        pointer = folder / which
        if not pointer.is_file():
            raise CheckpointError(
                f"{pointer}: no '{which}' checkpoint in {run_dir}; train it first or pass --checkpoint"
            )
        which = pointer.read_text().strip()
    path = folder / which
    if not (path / MANIFEST_FILE).is_file():
        raise CheckpointError(f"{path}: not a checkpoint; choose best, latest or step_N from {folder}")
    return path


def verify_checkpoint(path: Path, files: tuple[str, ...] = (MODEL_FILE,)) -> dict[str, Any]:
    """The manifest of a checkpoint after checking the sha256 of the named files against it."""
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        expected = manifest["files"]
    except (OSError, ValueError, KeyError):
        raise CheckpointError(f"{path / MANIFEST_FILE}: unreadable checkpoint manifest") from None
    for name in files:
        if not (path / name).is_file() or _sha256(path / name) != expected.get(name):
            raise CheckpointError(f"{path / name}: missing or corrupt (sha256 differs from the manifest)")
    return manifest


def load_weights(path: Path, model: nn.Module) -> None:
    verify_checkpoint(path)
    try:
        load_model(model, str(path / MODEL_FILE))
    except (RuntimeError, KeyError) as err:
        raise CheckpointError(
            f"{path / MODEL_FILE}: weights do not fit this model ({str(err).splitlines()[0][:160]}); "
            "was it trained with another config?"
        ) from None


def steps_newest_first(folder: Path) -> list[Path]:
    steps = [p for p in folder.glob("step_*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(steps, key=lambda p: int(p.name[5:]), reverse=True)


def latest_good_checkpoint(run_dir: Path, log: Callable[[str], None] = print) -> Path:
    """The newest checkpoint whose files match their manifest; a corrupt one is reported and passed over."""
    folder = Path(run_dir) / "checkpoints"
    candidates = steps_newest_first(folder)
    if not candidates:
        raise CheckpointError(f"{folder}: no checkpoint to resume from; train without --resume first")
    for path in candidates:
        try:
            verify_checkpoint(path, (MODEL_FILE, STATE_FILE))
            return path
        except CheckpointError as err:
            log(f"warning: skipping checkpoint {path.name}: {err}")
    raise CheckpointError(f"{folder}: every checkpoint is corrupt; start a new run")


def load_trainer_state(path: Path) -> dict[str, Any]:
    """A checkpoint's trainer state in the current layout (STATE_FORMAT)."""
    # weights_only: the state holds only tensors and plain containers, so no code can ride along.
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    version = state.pop("format", 1)
    if version == 1:
        return _from_format_1(state)
    if version != STATE_FORMAT:
        raise CheckpointError(
            f"{path / STATE_FILE}: trainer state format {version}, but this aurl reads formats 1 to {STATE_FORMAT}; "
            "resume it with the aurl version that wrote it"
        )
    return state


def _from_format_1(state: dict[str, Any]) -> dict[str, Any]:
    """Format 1, the trainer's fields side by side, as components hold them now."""
    kept = ("step", "micro_batches", "windows_seen", "optimizer", "scheduler", "scaler", "rng", "objective")
    return {
        **{key: state[key] for key in kept},
        "seconds": state.get("seconds", 0.0),  # older still: no time budget kept
        "validation": {
            "best": state["best_valid"],
            "early_stopping": state["early_stopping"],
            "plateau": state["plateau"],
            "lr_scale": 1.0,
        },
        "stability": {  # format 1's lr_scale held the plateau's drops and the recoveries' together
            "lr_scale": state["lr_scale"],
            "bad_in_a_row": state["bad_in_a_row"],
            "counters": state["counters"],
            "norms": [],  # not kept then
        },
    }


class OptimizerState:
    """An optimizer's state_dict, as full tensors whatever the wrapping (see FULL)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer

    def state_dict(self) -> dict[str, Any]:
        return get_optimizer_state_dict(self.model, self.optimizer, options=FULL)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_optimizer_state_dict(self.model, self.optimizer, state, options=FULL)


class Checkpointer:
    """A training run's checkpoints: the (wrapped or sharded) model's weights beside `state`, the trainer
    (whose state_dict is its position and the dict of its components'). Every rank calls save and load,
    as gathering the weights and the ranks' generators is collective; rank 0 alone writes."""

    def __init__(
        self,
        run_dir: Path,
        model: nn.Module,
        state: Stateful,
        keep_last: int,
        env: DistEnv,
        log: Callable[[str], None],
    ):
        self.run_dir, self.model, self.state = run_dir, model, state
        self.keep_last, self.env, self.log = keep_last, env, log
        self.tied = tied_names(unwrap(model))

    def save(self, step: int, metrics: dict[str, float], best: bool) -> None:
        weights = get_model_state_dict(self.model, options=FULL)
        weights = {k: v for k, v in weights.items() if k not in self.tied}
        state = self.state.state_dict()
        if self.env.is_main:
            folder = self.run_dir / "checkpoints"
            save_checkpoint(folder, step, weights, state, metrics, best)
            prune_checkpoints(folder, self.keep_last)

    def load(self, path: Path) -> None:
        """Continue from a checkpoint folder: the weights and every component's state."""
        self.load_weights(path)
        self.state.load_state_dict(load_trainer_state(path))

    def load_weights(self, path: Path) -> None:
        file = path / MODEL_FILE
        weights = load_file(str(file))
        expected = set(unwrap(self.model).state_dict()) - self.tied  # a tied tensor is stored once
        try:
            if set(weights) != expected:
                raise ValueError(f"{len(set(weights) ^ expected)} tensor names differ")
            # strict=False only for the tied names left out above
            set_model_state_dict(self.model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
        except (RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"{file}: weights do not fit this model ({str(err).splitlines()[0][:120]}); "
                "resume with the run's own model settings"
            ) from None

    def newest_intact(self) -> Path | None:
        """The newest checkpoint whose files match their manifest (see latest_good_checkpoint); None if none."""
        try:
            return latest_good_checkpoint(self.run_dir, self.log)
        except CheckpointError:
            return None
