"""What a corpus holds (tracks, drums, velocities, pedal, tempo and meter changes, length), which preset
fits it, and what the chosen tokenizer would drop of it.

`aurl prepare` gathers a few numbers per file from the Score its worker already parsed (`score_stats`),
keeps them in the manifest so that a re-run that reuses a file still counts it, and sums them up with
`profile_of`. The presets and the reasons to pick each are one decision table, `PRESETS`; what a
tokenizer setting loses is another, `DROPPED`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import miditok
import symusic
from miditok.utils import get_bars_ticks

from aurl.config import TokenizerConfig

PIANOS = range(8)  # General MIDI programs 0-7: acoustic, electric and honky-tonk pianos, harpsichord, clavinet


@dataclass(frozen=True)
class FileStats:
    """The numbers of one parsed file that the profile sums up."""

    tracks: int  # tracks with notes, the drum kit included
    piano_tracks: int  # pitched tracks with a piano program
    drums: bool
    velocities: frozenset[int]  # distinct note velocities
    pedal: bool  # sustain pedal (control change 64) pressed at least once
    tempo_changes: bool
    time_signature_changes: bool
    bars: int

    def to_json(self) -> dict:
        # The velocities as one string of numbers: a list would take a line each in the indented manifest.
        return {**asdict(self), "velocities": " ".join(map(str, sorted(self.velocities)))}

    @classmethod
    def from_json(cls, data: dict) -> FileStats:
        return cls(**{**data, "velocities": frozenset(int(v) for v in data["velocities"].split())})


def score_stats(score: symusic.Score) -> FileStats:
    """The profile's numbers of one score, read before tokenization changes it."""
    tracks = [t for t in score.tracks if len(t.notes)]
    tempos = {round(t.qpm, 2) for t in score.tempos}
    meters = {(ts.numerator, ts.denominator) for ts in score.time_signatures}
    return FileStats(
        tracks=len(tracks),
        piano_tracks=sum(not t.is_drum and t.program in PIANOS for t in tracks),
        drums=any(t.is_drum for t in tracks),
        velocities=frozenset(v for t in tracks for v in t.notes.numpy()["velocity"].tolist()),
        pedal=any(len(t.pedals) for t in score.tracks),  # symusic reads pedals from control change 64
        tempo_changes=len(tempos) > 1,
        time_signature_changes=len(meters) > 1,
        bars=len(get_bars_ticks(score)),
    )


@dataclass(frozen=True)
class Profile:
    """A corpus in numbers: counts are of files, medians are over files."""

    files: int
    tracks_median: float
    tracks_max: int
    several_tracks: int
    drums: int
    solo_piano: int  # one or two pitched tracks (a hand each), all pianos, no drums
    varying_velocities: int  # more than one velocity
    velocities: int  # distinct over the corpus
    velocities_median: float
    pedal: int
    tempo_changes: int
    time_signature_changes: int
    bars_median: float
    tokens_median: float

    def share(self, count: int) -> float:
        return count / self.files

    def of(self, count: int) -> str:
        return f"{count} of {self.files} files"

    def table(self) -> str:
        rows = [
            ("tracks per file", f"median {self.tracks_median:g}, max {self.tracks_max}"),
            ("files with drums", self._count(self.drums)),
            ("distinct velocities", f"{self.velocities} in all, median {self.velocities_median:g} per file"),
            ("files with sustain pedal", self._count(self.pedal)),
            ("files with tempo changes", self._count(self.tempo_changes)),
            ("files with meter changes", self._count(self.time_signature_changes)),
            ("length per file", f"median {self.bars_median:g} bars, {self.tokens_median:,.0f} tokens"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join([f"corpus profile ({self.files} files)", *(f"{n:<{width}}  {v}" for n, v in rows)])

    def _count(self, count: int) -> str:
        return f"{count} of {self.files} ({self.share(count):.0%})"

    def preset(self) -> Preset:
        return next(p for p in PRESETS if p.fits(self))

    def suggestion(self) -> str:
        preset = self.preset()
        return f"preset that fits: {preset.file} ({preset.name}): {preset.reason(self)}"

    def warnings(self, tokenizer_config: miditok.TokenizerConfig | TokenizerConfig) -> list[str]:
        """One line per feature the corpus has and a tokenizer with this config (MidiTok's or aurl's
        tokenizer section: the same field names) would drop."""
        fit = self.preset()
        lines = []
        for drop in DROPPED:
            count = drop.count(self)
            if count and not getattr(tokenizer_config, drop.key):
                hint = f"use {fit.file} or " if drop.key in fit.keeps else ""
                lines.append(
                    f"warning: {self.of(count)} {drop.has} but tokenizer.{drop.key} is false: {drop.loss}; "
                    f"{hint}--set tokenizer.{drop.key}=true"
                )
        return lines


def profile_of(stats: Sequence[FileStats], tokens: Sequence[int]) -> Profile:
    """The profile of a corpus from its files' stats and token counts (in the same order)."""
    tracks = [s.tracks for s in stats]
    return Profile(
        files=len(stats),
        tracks_median=statistics.median(tracks),
        tracks_max=max(tracks),
        several_tracks=sum(n > 1 for n in tracks),
        drums=sum(s.drums for s in stats),
        solo_piano=sum(not s.drums and 1 <= s.tracks <= 2 and s.piano_tracks == s.tracks for s in stats),
        varying_velocities=sum(len(s.velocities) > 1 for s in stats),
        velocities=len(frozenset().union(*(s.velocities for s in stats))),
        velocities_median=statistics.median(len(s.velocities) for s in stats),
        pedal=sum(s.pedal for s in stats),
        tempo_changes=sum(s.tempo_changes for s in stats),
        time_signature_changes=sum(s.time_signature_changes for s in stats),
        bars_median=statistics.median(s.bars for s in stats),
        tokens_median=statistics.median(tokens),
    )


@dataclass(frozen=True)
class Preset:
    name: str
    file: str
    keeps: frozenset[str]  # tokenizer switches the preset turns on (tests hold them to the YAML)
    fits: Callable[[Profile], bool]
    reason: Callable[[Profile], str]


_PROGRAMS_AND_METER = frozenset({"use_programs", "use_tempos", "use_time_signatures"})
_DYNAMICS = frozenset({"use_velocities", "use_sustain_pedals"})

# The decision table: the first preset that fits names the corpus ("commonly": in at least half the
# files). Drums first: the band preset keeps the kit apart from the pitched tracks, with their dynamics.
# Then solo piano that is played (varying velocities or the pedal), then any other music with varying
# velocities, and last what keeps one velocity and has no drums: voices, such as the chorales'.
PRESETS = (
    Preset(
        "band",
        "configs/band.yaml",
        _PROGRAMS_AND_METER | _DYNAMICS,
        lambda p: p.share(p.drums) >= 0.5,
        lambda p: f"{p.of(p.drums)} have drums, with a median of {p.tracks_median:g} tracks",
    ),
    Preset(
        "piano",
        "configs/piano.yaml",
        _PROGRAMS_AND_METER | _DYNAMICS,
        lambda p: p.share(p.solo_piano) >= 0.5 and max(p.share(p.varying_velocities), p.share(p.pedal)) >= 0.5,
        lambda p: (
            f"{p.of(p.solo_piano)} are solo piano, with a median of {p.velocities_median:g} distinct "
            f"velocities per file and the sustain pedal in {p.of(p.pedal)}"
        ),
    ),
    Preset(
        "band",
        "configs/band.yaml",
        _PROGRAMS_AND_METER | _DYNAMICS,
        lambda p: p.share(p.varying_velocities) >= 0.5,
        lambda p: (
            f"{p.of(p.varying_velocities)} have varying velocities and {p.of(p.files - p.solo_piano)} are not "
            f"solo piano, with a median of {p.tracks_median:g} tracks"
        ),
    ),
    Preset(
        "chorale",
        "configs/demo.yaml",
        _PROGRAMS_AND_METER,
        lambda p: True,
        lambda p: (
            f"{p.of(p.files - p.varying_velocities)} keep one velocity and {p.of(p.files - p.drums)} have "
            f"no drums, with a median of {p.tracks_median:g} tracks: voices, each its own program"
        ),
    ),
)


@dataclass(frozen=True)
class Dropped:
    key: str  # the tokenizer switch that keeps the feature
    count: Callable[[Profile], int]  # files that have it
    has: str
    loss: str


DROPPED = (
    Dropped(
        "use_velocities",
        lambda p: p.varying_velocities,
        "have varying velocities",
        "every note is written at one velocity",
    ),
    Dropped("use_sustain_pedals", lambda p: p.pedal, "use the sustain pedal", "the pedal is left out"),
    Dropped(
        "use_programs",
        lambda p: max(p.several_tracks, p.drums),
        "have several tracks or drums",
        "their tracks are merged into one, drums into pitched notes",
    ),
    Dropped("use_tempos", lambda p: p.tempo_changes, "change tempo", "every piece is written at one tempo"),
    Dropped(
        "use_time_signatures",
        lambda p: p.time_signature_changes,
        "change time signature",
        "every bar is written in 4/4",
    ),
)
