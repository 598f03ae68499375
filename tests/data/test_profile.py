import json
import statistics
from collections import Counter

import numpy as np
import pytest
import symusic

from aurl.cli import main
from aurl.config import load_config
from aurl.data.dataset import PreparedDataset
from aurl.data.prepare import prepare
from aurl.data.profile import DROPPED, PRESETS, profile_of, score_stats
from aurl.generation.generate import tokens_to_score
from tests.conftest import ROOT, TPQ, make_midi

QUIET = {"progress": False, "log": lambda s: None}
BAND, PIANO, DEMO = (ROOT / "configs" / f"{name}.yaml" for name in ("band", "piano", "demo"))
# Ten files need larger held-out fractions than the default to put one in each split (at prepare).
SPLITS = ["--set", "data.valid_fraction=0.2", "--set", "data.test_fraction=0.1"]
# The tiny test model and a short run, on top of a preset's data and tokenizer sections.
TINY_RUN = [
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.context=256",
    "data.seq_len=128",
    "train.batch_tokens=1024",
    "train.warmup_steps=5",
    "train.lr=1e-2",  # a tiny model takes it: 30 steps learn what the tests look for
    "train.max_steps=30",
    "train.eval_interval=50",
    "train.eval_batches=2",
    "train.save_interval=50",
    "train.sample_interval=0",
    "train.device=cpu",
    "train.peak_flops=1e11",
]
PIANO_VELOCITIES = (20, 34, 48, 62, 76, 90, 104, 118, 127)  # apart by more than a velocity bin of 4


def band_midi(path, seed, drums=True) -> symusic.Score:
    """conftest's melody, bass (and drums) piece, each note at its own velocity."""
    score = make_midi(path, seed, drums=drums)
    rng = np.random.default_rng(seed)
    for track in score.tracks:
        for note in track.notes:
            note.velocity = int(rng.integers(40, 120))
    score.dump_midi(str(path))
    return score


def piano_midi(path, seed, bars=8) -> symusic.Score:
    """One piano track of 16th notes cycling through PIANO_VELOCITIES, the pedal pressed for three beats
    of every bar (control change 64, on the 24-per-beat grid of the piano preset)."""
    rng = np.random.default_rng(seed)
    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, 80.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track(name="piano", program=0)
    for i in range(bars * 16):
        pitch = 48 + int(rng.integers(0, 24))
        track.notes.append(symusic.Note(i * TPQ // 4, TPQ // 4, pitch, PIANO_VELOCITIES[i % len(PIANO_VELOCITIES)]))
    for bar in range(bars):
        start = bar * 4 * TPQ + TPQ // 12
        track.controls.append(symusic.ControlChange(start, 64, 127))
        track.controls.append(symusic.ControlChange(start + 3 * TPQ, 64, 0))
    score.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return symusic.Score(str(path))  # as read back: symusic makes Pedals of the control changes


def chorale_midi(path, seed, bars=8) -> symusic.Score:
    """Four voices in quarter notes at one velocity, a string program each (violin, viola, cello,
    contrabass), as the built-in chorales are written."""
    rng = np.random.default_rng(seed)
    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, 90.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    for program, low in zip((40, 41, 42, 43), (67, 60, 53, 43), strict=True):
        track = symusic.Track(name=f"voice {program}", program=program)
        for i in range(bars * 4):
            track.notes.append(symusic.Note(i * TPQ, TPQ, low + int(rng.integers(0, 8)), 80))
        score.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return score


@pytest.fixture(scope="module")
def band_dir(tmp_path_factory):
    """Ten band pieces: eight with drums, two without."""
    folder = tmp_path_factory.mktemp("band")
    scores = [band_midi(folder / f"piece_{i}.mid", seed=i, drums=i < 8) for i in range(10)]
    return folder, scores


def test_band_corpus_is_profiled_and_named_band(band_dir, tmp_path):
    folder, scores = band_dir
    report = prepare(str(folder), tmp_path, load_config(BAND), **QUIET)
    profile = report.profile
    per_file = [np.unique(np.concatenate([t.notes.numpy()["velocity"] for t in s.tracks])) for s in scores]
    lengths = [e["length"] for e in json.loads((tmp_path / "manifest.json").read_text())["files"]]
    assert (profile.files, profile.tracks_median, profile.tracks_max, profile.drums) == (10, 3, 3, 8)
    assert profile.velocities == len(np.unique(np.concatenate(per_file)))
    assert profile.velocities_median == statistics.median(len(v) for v in per_file)
    assert profile.varying_velocities == 10 and profile.pedal == 0
    assert profile.tempo_changes == profile.time_signature_changes == 10  # make_midi changes both half-way
    assert profile.bars_median == 12 and profile.tokens_median == statistics.median(lengths)
    assert profile.preset().name == "band" and "configs/band.yaml" in profile.suggestion()
    assert report.warnings == []  # the band preset keeps all this corpus has

    # A re-run reuses every file and still profiles it; a manifest without stats (an older aurl) does not.
    again = prepare(str(folder), tmp_path, load_config(BAND), **QUIET)
    assert again.reused == 10 and again.profile == profile
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for entry in manifest["files"]:
        del entry["stats"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    older = prepare(str(folder), tmp_path, load_config(BAND), **QUIET)
    assert older.tokenized == 10 and older.profile == profile


def test_prepare_prints_the_profile_and_warns_what_the_demo_preset_drops(band_dir, tmp_path, capsys):
    folder, _ = band_dir
    args = ["prepare", str(folder), "--out", str(tmp_path), "--config", str(DEMO), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "corpus profile (10 files)" in out and "files with drums          8 of 10 (80%)" in out
    assert "preset that fits: configs/band.yaml (band): 8 of 10 files have drums" in out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: 10 of 10 files have varying velocities but tokenizer.use_velocities is false: every note is "
        "written at one velocity; use configs/band.yaml or --set tokenizer.use_velocities=true"
    ]


def test_band_preset_trains_and_writes_instruments_and_drums(band_dir, tmp_path, capsys):
    folder, _ = band_dir
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "samples"
    assert main(["prepare", str(folder), "--out", str(data), "--config", str(BAND), *SPLITS, "--no-progress"]) == 0
    sets = [f"--set={s}" for s in [*TINY_RUN, f"data.dataset={data}"]]
    assert main(["train", "--config", str(BAND), *SPLITS, *sets, "--run-dir", str(run), "--no-progress"]) == 0
    args = ["generate", "--run", str(run), "--num", "4", "--max-tokens", "200", "--seed", "0", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    for path in sorted(out.glob("*.mid")):
        notes = Counter()
        for track in symusic.Score(str(path)).tracks:
            notes[track.program, track.is_drum] += len(track.notes)
        # The training pieces play melody (program 0), bass (33) and mostly drums in every bar. A model that
        # learned nothing spreads its notes over 129 programs; this one writes those three instruments.
        learned = [notes[0, False], notes[33, False], notes[0, True]]
        assert min(learned) >= 3 and sum(learned) > sum(notes.values()) / 2, (path, notes)


def test_piano_preset_keeps_velocities_and_pedal(tmp_path):
    written = piano_midi(tmp_path / "midi" / "piece.mid", seed=0)
    decoded, warnings = {}, {}
    for name, config in (("piano", PIANO), ("demo", DEMO)):
        warnings[name] = prepare(str(tmp_path / "midi"), tmp_path / name, load_config(config), **QUIET).warnings
        data = PreparedDataset(tmp_path / name)
        (entry,) = data.manifest["files"]
        ids = data.tokens[entry["offset"] : entry["offset"] + entry["length"]].tolist()
        score, errors = tokens_to_score(data.tokenizer, ids)
        assert errors == 0
        decoded[name] = score.resample(TPQ)
    piano = decoded["piano"]
    assert len({n.velocity for n in piano.tracks[0].notes}) == len(PIANO_VELOCITIES)
    pedals = [(p.time, p.end) for p in written.tracks[0].pedals]
    assert [(p.time, p.end) for p in piano.tracks[0].pedals] == pedals
    # The demo preset drops both, and its profile says so.
    assert len({n.velocity for n in decoded["demo"].tracks[0].notes}) == 1 and not decoded["demo"].tracks[0].pedals
    assert warnings["piano"] == []
    assert [w.split(" but ")[1].split(" is ")[0] for w in warnings["demo"]] == [
        "tokenizer.use_velocities",
        "tokenizer.use_sustain_pedals",
    ]


def test_piano_preset_trains_and_generates(tmp_path, capsys):
    for i in range(10):
        piano_midi(tmp_path / "midi" / f"piece_{i}.mid", seed=i)
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "samples"
    args = ["prepare", str(tmp_path / "midi"), "--out", str(data), "--config", str(PIANO), *SPLITS, "--no-progress"]
    assert main(args) == 0
    sets = [f"--set={s}" for s in [*TINY_RUN, f"data.dataset={data}"]]
    assert main(["train", "--config", str(PIANO), *SPLITS, *sets, "--run-dir", str(run), "--no-progress"]) == 0
    assert main(["generate", "--run", str(run), "--num", "2", "--max-tokens", "200", "--out", str(out)]) == 0
    capsys.readouterr()
    for path in sorted(out.glob("*.mid")):
        notes = [n for t in symusic.Score(str(path)).tracks for n in t.notes]
        assert len({n.velocity for n in notes}) > 1, path


def test_piano_and_chorale_files_are_told_apart(tmp_path):
    for make, preset in ((piano_midi, "piano"), (chorale_midi, "chorale")):
        paths = [tmp_path / f"{preset}_{i}.mid" for i in range(3)]
        for i, path in enumerate(paths):
            make(path, seed=i)
        stats = [score_stats(symusic.Score(str(path))) for path in paths]
        profile = profile_of(stats, [100] * 3)
        assert profile.preset().name == preset, profile.suggestion()
    assert stats[0].tracks == 4 and len(stats[0].velocities) == 1 and not stats[0].drums


def test_presets_turn_on_what_the_decision_table_says_they_keep():
    for preset in PRESETS:
        tokenizer = load_config(ROOT / preset.file).tokenizer
        assert {d.key for d in DROPPED if getattr(tokenizer, d.key)} == preset.keeps, preset.file
