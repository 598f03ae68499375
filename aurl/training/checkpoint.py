"""Checkpoints: written atomically with a sha256 manifest, named by `latest`/`best`, pruned by retention.

A checkpoint is `checkpoints/step_<N>/` holding `model.safetensors` (weights only: all that generation
needs, nothing unpickled), `trainer_state.pt` (optimizer, scheduler, RNG and data position) and
`manifest.json` (sha256 of each file, metrics, versions). It is written to a temporary folder and
renamed into place, so a crash never leaves half a checkpoint; a failed write removes its temporary folder,
and one a killed process left behind is removed when the run resumes (see remove_partial).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model
from safetensors.torch import save as safetensors_bytes
from torch import nn

import aurl
from aurl.errors import CheckpointError
from aurl.files import write_together, writing

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
MANIFEST_FILE = "manifest.json"
POINTERS = ("latest", "best")


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
                    torch.save(state, fh)
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
    # weights_only: the state holds only tensors and plain containers, so no code can ride along.
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
