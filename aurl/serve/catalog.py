"""What the studio holds and lists: the models it serves and the songs it works with (uploads, takes made
songs, built-in examples), each as the API describes it in JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import symusic

from aurl.data.corpus import cache_dir
from aurl.data.multitrack import CONTROLS, is_multitrack
from aurl.generation import requests
from aurl.generation.generate import Trained
from aurl.render import drawing

EXAMPLES = 6  # built-in example songs offered, from the served runs' held-out files


def meters(tokenizer) -> list[str]:
    """The time signatures a model can write (what settings.meter may hold), by beat then beats."""
    found = [token.removeprefix("TimeSig_") for token in tokenizer.vocab if token.startswith("TimeSig_")]
    return sorted(found, key=lambda m: (int(m.split("/")[1]), int(m.split("/")[0])))


@dataclass
class Served:
    id: str
    trained: Trained
    programs: list[int]  # the voices its corpus has, the top one first (Trained.voices)

    @property
    def tasks(self) -> dict[str, type[requests.Request]]:
        return {task: cls for task, cls in requests.REQUESTS.items() if cls.offered(self.trained)}

    def public(self) -> dict:
        config = self.trained.config
        return {
            "id": self.id,
            "mode": config.model.mode,
            "tokenization": config.tokenizer.kind,
            "multitrack": is_multitrack(self.trained.tokenizer),
            "tasks": [cls.needs() for cls in self.tasks.values()],
            "parameters": sum(p.numel() for p in self.trained.model.parameters()),
            "decoding": "compiled" if self.trained.compiled else "eager",
            "context": config.model.context,
            "settings": config.generate.model_dump(),
            "controls": sorted({CONTROLS[name][2] for name in config.tokenizer.controls}),
            "meters": meters(self.trained.tokenizer),
            "programs": self.programs,
        }


@dataclass
class Song:
    id: str
    name: str
    path: Path
    score: symusic.Score

    def public(self) -> dict:
        notes = drawing(self.score)
        tracks = [{k: v for k, v in t.items() if k != "notes"} | {"notes": len(t["notes"])} for t in notes["tracks"]]
        return {"id": self.id, "name": self.name, "bars": len(notes["bars"]), "tracks": tracks, "notes": notes}


def with_notes(score: symusic.Score) -> symusic.Score:
    """The score without its empty tracks: track numbers then count what co-creation counts."""
    score.tracks = [t for t in score.tracks if len(t.notes)]
    return score


def example_files(runs: list[Trained]) -> list[Path]:
    """Held-out (valid split) files of the served runs' datasets that are on this machine."""
    found: dict[str, Path] = {}
    for trained in runs:
        dataset = trained.config.data.dataset
        manifest = Path(dataset) / "manifest.json" if dataset else None
        if manifest is None or not manifest.is_file():
            continue
        info = json.loads(manifest.read_text())
        source = str(info.get("source", ""))
        root = cache_dir() / source.removeprefix("builtin:") if source.startswith("builtin:") else Path(source)
        for entry in info["files"]:
            path = root / entry["name"]
            if entry["split"] == "valid" and path.is_file():
                found.setdefault(entry["name"], path)
    return [found[name] for name in sorted(found)[:EXAMPLES]]
