"""Generation requests: one class per task, in a registry, as aurl.modes has one spec per mode.

A request holds what a musician asks for, its fields named as the studio's API names them (the CLI maps its
flags onto them once, in aurl.cli). `prepare(trained)` checks it against a run, naming the field of any bad
value (RequestError), and returns its Work: the prompt and plan the sampler follows, which requests decode
together (Work.key) and the takes it returns. aurl.generation.takes writes the takes, for the CLI, the studio
and the training samples alike. Adding a task is adding a class here; the studio's page asks /api/models
what each task needs (`needs`), never its name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import symusic
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aurl.config import GenerateConfig
from aurl.data.multitrack import is_multitrack
from aurl.errors import RequestError
from aurl.generation.cocreate import accompaniment, infilling
from aurl.generation.generate import Pieces, Trained, Work, primer_tokens
from aurl.generation.latent import encode_file, slerp
from aurl.generation.takes import Sample, write_takes

SONG = {"json_schema_extra": {"song": True}}  # marks a field that names a MIDI file (the studio: a song's id)


class Request(BaseModel):
    """What every request has: the run's generate settings it overrides."""

    model_config = ConfigDict(extra="forbid")
    label: ClassVar[str]  # how the page names the task
    hint: ClassVar[str]  # one sentence on what it does
    run_needs: ClassVar[str] = ""  # what a run must be to do it, where not every run can
    uses: ClassVar[tuple[str, ...]] = ()  # settings that only this kind of task reads
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="generate settings: num, max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, "
        "repetition_window, min_tokens, min_bars, max_bars, constrained, primer_bars, meter, sweeps, keep_sweeps, seed",
    )

    @classmethod
    def offered(cls, trained: Trained) -> bool:
        """Whether this run can do the task at all."""
        return True

    @classmethod
    def needs(cls) -> dict:
        """What the page must ask for: the task's fields (settings aside), which are songs and which required."""
        fields = {
            name: {
                "description": info.description or "",
                "song": name in cls.song_fields(),
                "required": info.is_required(),
            }
            for name, info in cls.model_fields.items()
            if name not in ("task", "settings")
        }
        task = cls.model_fields["task"].default
        return {"task": task, "label": cls.label, "hint": cls.hint, "fields": fields, "uses": list(cls.uses)}

    @classmethod
    def song_fields(cls) -> list[str]:
        """The fields that name a MIDI file (the studio: a song's id)."""
        return [name for name, info in cls.model_fields.items() if info.json_schema_extra == SONG["json_schema_extra"]]

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Request:
        """The request with these fields; a bad or misplaced one is a RequestError naming it."""
        try:
            return cls.model_validate(fields)
        except ValidationError as err:
            first = err.errors()[0]
            name = ".".join(str(part) for part in first["loc"]) or "request"
            task = cls.model_fields["task"].default
            if first["type"] == "extra_forbidden":
                raise RequestError(name, f": not a field of {task}") from None
            if first["type"] == "missing" and name in cls.model_fields:
                raise RequestError(name, f": {task} needs it ({cls.model_fields[name].description})") from None
            raise RequestError(name, f": {first['msg'].removeprefix('Value error, ')}") from None

    def prepare(self, trained: Trained) -> Work:
        """The request checked against `trained` and ready to sample."""
        if not self.offered(trained):
            raise RequestError("task", f": {self.task} needs {self.run_needs}; {trained.run_dir} is not one")
        return self._work(trained, trained.settings(self.settings, self.task))

    def _work(self, trained: Trained, settings: GenerateConfig) -> Work:
        raise NotImplementedError

    def write(
        self,
        trained: Trained,
        out_dir: str | Path | None = None,
        log: Callable[[str], None] | None = print,
        wav: bool = False,
        soundfont: str | Path | None = None,
    ) -> list[Sample]:
        """Sample the takes and write them to out_dir (default RUN/samples/<task>) as sample_<i>.mid and .png
        (and with `wav`, .wav through `soundfont`, default TimGM6mb)."""
        work = self.prepare(trained)
        work.log = log
        out = Path(out_dir) if out_dir else trained.run_dir / "samples" / self.task
        return write_takes(work.takes(), out, trained.run_dir.name, log, wav=wav, soundfont=soundfont)


class Generate(Request):
    label: ClassVar[str] = "From nothing"
    hint: ClassVar[str] = "Write new music from nothing."
    task: Literal["generate"] = "generate"

    def _work(self, trained: Trained, settings: GenerateConfig) -> Work:
        return _pieces(trained, settings)


class Continue(Request):
    label: ClassVar[str] = "Continue"
    hint: ClassVar[str] = "Continue the song: its first bars (primer bars, under More options) are the prompt."
    task: Literal["continue"] = "continue"
    uses: ClassVar[tuple[str, ...]] = ("primer_bars",)
    song: str = Field(description="a MIDI file whose first settings.primer_bars bars the takes continue", **SONG)

    def _work(self, trained: Trained, settings: GenerateConfig) -> Work:
        ids, head, end = primer_tokens(self.song, trained.tokenizer, settings.primer_bars, trained.song_voices)
        return _pieces(trained, settings, ids, head=head, head_end=end)


class _CoCreation(Request):
    """What accompany and infill share: the runs that can do them, revision sweeps, and attribute controls."""

    run_needs: ClassVar[str] = "a run trained with tokenizer.kind REMI and use_programs, MMM or VoiceGrid"
    uses: ClassVar[tuple[str, ...]] = ("sweeps", "keep_sweeps")
    controls: list[str] = Field(
        default_factory=list, description='attribute controls, e.g. "track=4 density=6", "bars=5-8 polyphony=2"'
    )

    @classmethod
    def offered(cls, trained: Trained) -> bool:
        return trained.cocreates


class Accompany(_CoCreation):
    label: ClassVar[str] = "Accompany"
    hint: ClassVar[str] = "Keep tracks of the song and write new ones beside them, bar for bar."
    task: Literal["accompany"] = "accompany"
    song: str = Field(description="the MIDI file accompanied", **SONG)
    keep: list[int] | None = Field(None, description="the song's tracks kept, 0-based (default: all)")
    add: list[int] = Field(description="programs of the new tracks (0-127, -1 drums)")

    def _work(self, trained: Trained, settings: GenerateConfig) -> Work:
        return accompaniment(trained, settings, self.song, self.add, self.keep, self.controls)


class Infill(_CoCreation):
    label: ClassVar[str] = "Infill"
    hint: ClassVar[str] = "Rewrite a range of bars, with everything around them in view."
    task: Literal["infill"] = "infill"
    song: str = Field(description="the MIDI file rewritten", **SONG)
    bars: tuple[int, int] = Field(description="the bars rewritten, 1-based, inclusive")
    track: int | None = Field(None, description="the track rewritten, 0-based (default: every track)")

    def _work(self, trained: Trained, settings: GenerateConfig) -> Work:
        return infilling(trained, settings, self.song, self.bars, self.track, self.controls)


class _Latent(Request):
    """What only a latent model does: write from codes its encoder reads from songs."""

    run_needs: ClassVar[str] = "a latent model (model.mode vae)"

    @classmethod
    def offered(cls, trained: Trained) -> bool:
        return trained.mode.latent


class Encode(_Latent):
    label: ClassVar[str] = "Reconstruct"
    hint: ClassVar[str] = "Encode the song's first segment and write it again from its latent code."
    task: Literal["encode"] = "encode"
    song: str = Field(description="the MIDI file whose first segment is encoded", **SONG)

    def _work(self, trained: Trained, settings: GenerateConfig) -> Work:
        z = encode_file(self.song, trained.model, trained.tokenizer, trained.config, trained.song_voices)
        return _pieces(trained, settings, z=z.expand(settings.num, -1))


class Interpolate(_Latent):
    label: ClassVar[str] = "Interpolate"
    hint: ClassVar[str] = "Write settings.steps pieces along the path from one song's latent code to another's."
    task: Literal["interpolate"] = "interpolate"
    uses: ClassVar[tuple[str, ...]] = ("steps",)
    song: str = Field(description="the MIDI file the path starts from", **SONG)
    to: str = Field(description="the MIDI file the path ends at", **SONG)

    def _work(self, trained: Trained, settings: GenerateConfig) -> Work:
        a, b = (
            encode_file(path, trained.model, trained.tokenizer, trained.config, trained.song_voices)
            for path in (self.song, self.to)
        )
        return _pieces(
            trained, settings, z=torch.stack([slerp(a, b, i / (settings.steps - 1)) for i in range(settings.steps)])
        )


REQUESTS: dict[str, type[Request]] = {
    cls.model_fields["task"].default: cls for cls in (Generate, Continue, Accompany, Infill, Encode, Interpolate)
}


def _pieces(
    trained: Trained,
    settings: GenerateConfig,
    primer: list[int] = (),
    z: torch.Tensor | None = None,
    head: symusic.Score | None = None,
    head_end: int = 0,
) -> Pieces:
    """Pieces written after BOS and a primer's ids, from `z` (a latent model's codes; default: drawn from the
    mode's prior), checked against what such pieces cannot be asked."""
    if settings.sweeps > 0:
        raise RequestError(
            "settings.sweeps", ": sweeps revise what co-creation writes (accompany, infill); leave it at 0"
        )
    for name in ("min_bars", "max_bars"):
        if is_multitrack(trained.tokenizer) and getattr(settings, name) is not None:
            raise RequestError(f"settings.{name}", ": a multitrack (MMM) run counts bars per track; leave it unset")
    if settings.constrained:
        _ = trained.grammar  # built now: a tokenizer without one is named before anything is sampled
    generator = torch.Generator().manual_seed(settings.seed)
    if z is None:
        z = trained.mode.prior(trained.model, settings.num, generator, settings.z_temperature)
    opening = [trained.tokenizer["BOS_None"], *trained.mode.opening(trained.tokenizer)]
    return Pieces(trained, [*opening, *primer], settings, generator, z, head, head_end)


def generate(
    run: str | Path | Trained,
    out_dir: str | Path | None = None,
    checkpoint: str = "best",
    log: Callable[[str], None] | None = print,
    request: Request | None = None,
    wav: bool = False,
    soundfont: str | Path | None = None,
    compiled: bool = False,
    **settings: Any,
) -> list[Sample]:
    """Write the takes of `request` (default: from nothing) from a run (a run directory, loaded from its
    `checkpoint`, or a run already loaded) to `out_dir` (default RUN/samples/<task>), with the run's generate
    settings overridden by the request's and then by `settings` (see GenerateConfig: num, max_tokens,
    temperature, top_k, top_p, min_p, repetition_penalty, max_bars, constrained, seed, sweeps, ...). With
    `compiled`, cached steps run compiled (see generation.fast).

        generate("runs/demo", request=Accompany(song="melody.mid", keep=[0], add=[41, 42, 43]), temperature=0.7)
    """
    trained = run if isinstance(run, Trained) else Trained.load(run, checkpoint, compiled)
    request = request or Generate()
    if settings:
        request = request.model_copy(update={"settings": {**request.settings, **settings}})
    return request.write(trained, out_dir, log, wav, soundfont)
