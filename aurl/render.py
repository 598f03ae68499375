"""Looking at and listening to MIDI (and scores in notation, as aurl.data.scores writes them as MIDI): piano-roll
PNG (matplotlib; one colour per track, bar lines) and WAV through a General MIDI SoundFont (tinysoundfont, else
FluidSynth's command line)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import symusic  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from aurl.data.corpus import read_score  # noqa: E402
from aurl.data.scores import is_score  # noqa: E402
from aurl.errors import AurlError  # noqa: E402
from aurl.files import write_together  # noqa: E402

SAMPLE_RATE = 44100
RELEASE_SECONDS = 1.0  # rendered past the last note-off, so the final notes fade instead of clicking
PEAK = 0.89  # peak-normalised to -1 dBFS
# General MIDI SoundFonts looked for when none is given: pretty_midi's wheel carries TimGM6mb, and Debian's
# fluidsynth package installs it (or FluidR3) under /usr/share/sounds/sf2.
SYSTEM_SOUNDFONTS = ("/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/FluidR3_GM.sf2")


class RenderError(AurlError):
    pass


def bar_starts(score: symusic.Score) -> list[int]:
    """Tick of every bar line, following the score's time-signature changes (4/4 when it has none)."""
    tpq, end = score.ticks_per_quarter, score.end()
    # One change per tick (files repeat a time signature in every part; the last one at a tick counts).
    at = {ts.time: (ts.time, ts.numerator, ts.denominator) for ts in score.time_signatures}
    changes = sorted(at.values()) or [(0, 4, 4)]
    if changes[0][0] > 0:
        changes.insert(0, (0, 4, 4))
    bars: list[int] = []
    for i, (start, num, den) in enumerate(changes):
        stop = changes[i + 1][0] if i + 1 < len(changes) else end
        length = max(1, int(tpq * 4 * num / den))
        bars.extend(range(start, max(start + 1, stop), length))
    return bars


Span = tuple[int, int, int]  # given material of a take: (track, first tick, tick after the last)


def given_notes(track: int, times: np.ndarray, given: list[Span]) -> np.ndarray:
    """Which notes of track `track` starting at ticks `times` are given (not written by the model)."""
    mask = np.zeros(len(times), dtype=bool)
    for which, start, stop in given:
        if which == track:
            mask |= (times >= start) & (times < stop)
    return mask


def drawing(score: symusic.Score, given: list[Span] = ()) -> dict:
    """A score's notes for a piano roll drawn elsewhere (the studio page): per track [start, duration,
    pitch, velocity, given (1) or written (0)] in quarter notes, the bar lines in quarter notes, the length
    and the seconds."""
    tpq = score.ticks_per_quarter
    tracks = []
    for i, track in enumerate(score.tracks):
        notes = track.notes.numpy()
        kept = given_notes(i, notes["time"], given)
        columns = [notes["time"] / tpq, notes["duration"] / tpq, notes["pitch"], notes["velocity"], kept]
        rows = np.stack(columns, axis=1)
        tracks.append(
            {
                "index": i,
                "program": int(track.program),
                "is_drum": bool(track.is_drum),
                "name": track.name,
                "notes": np.round(rows, 4).tolist(),
            }
        )
    return {
        "tracks": tracks,
        "bars": [tick / tpq for tick in bar_starts(score)],
        "length": score.end() / tpq,
        "seconds": round(float(score.to("second").end()), 3),
    }


LEGEND_TRACKS = 12  # tracks named in a piano roll's legend; the rest are counted


GIVEN_COLOUR = "0.62"  # given material (a primer, kept tracks, what surrounds a gap): grey; written: coloured


def piano_roll(score: symusic.Score, path: str | Path, title: str | None = None, given: list[Span] = ()) -> Path:
    """Write a piano roll of `score` to a PNG file: time in quarter notes, pitch up, tracks in colours, the
    `given` material in grey."""
    path = Path(path)
    tpq = score.ticks_per_quarter
    fig, ax = plt.subplots(figsize=(14, 5), dpi=100)
    colours = plt.get_cmap("tab10")
    numbered = [(i, t) for i, t in enumerate(score.tracks) if t.notes]
    for k, (i, track) in enumerate(numbered):
        notes = track.notes.numpy()
        kept = given_notes(i, notes["time"], given)
        label = "drums" if track.is_drum else f"{track.name or 'track'} (program {track.program})"
        if k >= LEGEND_TRACKS:  # a legend taller than the figure leaves no room for the roll
            label = f"+{len(numbered) - LEGEND_TRACKS} more tracks" if k == LEGEND_TRACKS else "_nolegend_"
        for mask, colour in ((kept, GIVEN_COLOUR), (~kept, colours(k % 10))):
            ax.barh(
                notes["pitch"][mask],
                notes["duration"][mask] / tpq,
                left=notes["time"][mask] / tpq,
                height=0.8,
                color=colour,
                label=label if mask.any() and colour != GIVEN_COLOUR else "_nolegend_",
                linewidth=0,
            )

    for tick in bar_starts(score):
        ax.axvline(tick / tpq, color="0.85", linewidth=0.6, zorder=0)
    pitches = np.concatenate([t.notes.numpy()["pitch"] for t in score.tracks if t.notes] or [np.array([60])])
    ax.set_ylim(pitches.min() - 2, pitches.max() + 2)
    ax.set_xlim(0, max(1, score.end()) / tpq)
    ax.set_xlabel("quarter notes")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    if given:
        handles.append(Patch(color=GIVEN_COLOUR))
        labels.append("given (kept as it was)")
    if handles:
        ax.legend(handles, labels, loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def default_soundfont() -> Path:
    spec = importlib.util.find_spec("pretty_midi")
    candidates = [Path(spec.origin).parent / "TimGM6mb.sf2"] if spec and spec.origin else []
    for path in [*candidates, *map(Path, SYSTEM_SOUNDFONTS)]:
        if path.is_file():
            return path
    raise RenderError(
        "--wav: no General MIDI SoundFont found; `pip install pretty_midi` (it carries TimGM6mb.sf2) "
        "or pass --soundfont FILE.sf2"
    )


def _synthesise(midi: Path, soundfont: Path, seconds: float) -> np.ndarray:
    """(frames, 2) float samples of `midi` played through `soundfont`."""
    frames = int(seconds * SAMPLE_RATE)
    if importlib.util.find_spec("tinysoundfont") is not None:
        import tinysoundfont

        synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
        synth.sfload(str(soundfont))
        sequencer = tinysoundfont.Sequencer(synth)
        sequencer.midi_load(str(midi))
        return np.frombuffer(synth.generate(frames), dtype=np.float32).reshape(-1, 2)
    if shutil.which("fluidsynth"):
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "out.raw"
            command = ["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(SAMPLE_RATE), "-O", "float", "-T", "raw"]
            subprocess.run([*command, "-F", str(raw), str(soundfont), str(midi)], check=True, capture_output=True)
            audio = np.fromfile(raw, dtype=np.float32).reshape(-1, 2)
        return np.pad(audio, ((0, max(0, frames - len(audio))), (0, 0)))[:frames]
    raise RenderError(
        "--wav: no SoundFont synth installed; `pip install --no-deps tinysoundfont` "
        "(or `apt-get install fluidsynth`), then render again"
    )


def render_wav(midi: str | Path, path: str | Path, soundfont: str | Path | None = None) -> Path:
    """Write `midi` as a 16-bit stereo WAV at 44.1 kHz, as long as the piece plus RELEASE_SECONDS, with its
    peak normalised to -1 dBFS."""
    midi, path = Path(midi), Path(path)
    font = Path(soundfont) if soundfont else default_soundfont()
    if not font.is_file():
        raise RenderError(f"{font}: SoundFont not found; pass an existing .sf2 file to --soundfont")
    score = read_score(midi)
    seconds = score.to("second").end() + RELEASE_SECONDS
    with tempfile.TemporaryDirectory() as scratch:
        if is_score(midi):  # the synths play MIDI files: the score's, as aurl reads it
            midi = Path(scratch) / "score.mid"
            score.dump_midi(str(midi))
        audio = _synthesise(midi, font, seconds)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0:
        audio = audio * (PEAK / peak)

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes((audio * 32767).astype("<i2").tobytes())

    write_together({path: write})  # a full disk is one WriteError naming the file, and leaves no part of it
    return path
