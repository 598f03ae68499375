import json
import math
import shutil

import pytest
import symusic

from aurl.cli import main
from aurl.evaluation.compare import compare_sets
from aurl.evaluation.features import HISTOGRAM_FEATURES, SCALAR_FEATURES, piece_features
from aurl.evaluation.report import evaluate
from tests.conftest import corpus_file, make_midi


def _score(notes, drums=()):
    """A 4/4 score at 24 ticks per quarter (the metrics' own grid), one piano track and one drum track."""
    score = symusic.Score(24)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    piano = symusic.Track(name="piano", program=0, is_drum=False)
    for time, duration, pitch in notes:
        piano.notes.append(symusic.Note(time, duration, pitch, 80))
    kit = symusic.Track(name="drums", program=0, is_drum=True)
    for time, duration, pitch in drums:
        kit.notes.append(symusic.Note(time, duration, pitch, 80))
    score.tracks.extend([piano, kit])
    return score


def test_features_of_a_hand_built_piece_match_muspys_definitions():
    # C4+E4 on beat 1, G4 on beat 2 for two beats, C5 on beat 2 of bar 2; a drum hit on beat 1
    f = piece_features(_score([(0, 24, 60), (0, 24, 64), (24, 48, 67), (120, 24, 72)], drums=[(0, 12, 36)]))
    assert f["pitch_count"] == 4  # drums are ignored by pitch metrics
    assert f["pitch_range"] == 12
    assert f["pitch_class_entropy"] == pytest.approx(1.5)  # C twice, E, G once: -(.5 log .5 + 2 x .25 log .25)
    assert f["pitch_entropy"] == pytest.approx(2.0)
    assert f["pitch_class_histogram"][0] == 0.5
    assert f["polyphony"] == pytest.approx(120 / 96)  # 2 pitches for 24 steps, 1 for 72 of the 96 sounding steps
    assert f["polyphony_rate"] == 0.0  # never more than 2 pitches
    assert f["scale_consistency"] == 1.0  # all in C major
    # 144 steps → 7 beats (MusPy counts length // resolution + 1); notes cover beats 0-3 and 5-6
    assert f["empty_beat_rate"] == pytest.approx(1 / 7)
    # bar onsets {0, 24} vs {24}: one position of 96 differs
    assert f["groove_consistency"] == pytest.approx(1 - 1 / 96)
    assert f["notes_per_bar"] == 2.5  # 5 notes (the drum hit counts) over 2 bars
    assert f["ioi_histogram"] == [0, 0, 0, 0, 0.5, 0, 0, 0, 0.5]  # onsets 0, 1 and 5 quarters
    assert f["longest_repeated_bars"] == 0


def test_repetition_finds_the_longest_repeated_run_of_bars():
    motif = [(0, 24, 60), (24, 24, 62), (48, 48, 64)]
    bars = [motif, motif, [(0, 96, 67)], motif, motif, [(0, 96, 65)]]  # bars 0-1 return as bars 3-4
    notes = [(t + 96 * b, d, p) for b, bar in enumerate(bars) for t, d, p in bar]
    assert piece_features(_score(notes))["longest_repeated_bars"] == 2


def test_evaluate_reports_time_signature_changes_beside_the_references(midi_dir, tmp_path, capsys):
    steady = tmp_path / "steady"
    steady.mkdir()
    for i in range(3):
        score = _score([(24 * j, 24, 60 + j % 12) for j in range(32)])
        score.time_signatures.append(symusic.TimeSignature(96, 4, 4))  # the same meter named again: no change
        score.dump_midi(str(steady / f"{i}.mid"))
    # make_midi's pieces change from 4/4 to 3/4 once
    assert main(["evaluate", str(midi_dir), "--reference", str(steady), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["meter_changes"] == {
        "generated": {"mean": 1.0, "pieces_changing": 10},
        "reference": {"mean": 0.0, "pieces_changing": 0},
    }
    said = "time-signature changes per piece: generated 1.00 (10 of 10 pieces change meter), reference 0.00 (0 of 3)"
    assert said in capsys.readouterr().out


def _chorale(path, alto: int) -> None:
    """Four voices of four quarter notes each (S 72, A alto, T 62, B 48), written to path."""
    score = symusic.Score(24)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    for program, pitch in zip((40, 41, 42, 43), (72, alto, 62, 48), strict=True):
        track = symusic.Track(program=program)
        for beat in range(4):
            track.notes.append(symusic.Note(24 * beat, 24, pitch, 80))
        score.tracks.append(track)
    score.dump_midi(str(path))


def test_evaluate_counts_voice_leading_faults_of_four_part_pieces(midi_dir, tmp_path, capsys):
    """The alto above the soprano at every onset: 4 crossings in 16 notes; Bach's (the reference) none. Pieces
    of other than four voices are left out of the count."""
    for name, alto in (("written", 74), ("bach", 67)):
        (tmp_path / name).mkdir()
        for i in range(2):
            _chorale(tmp_path / name / f"{i}.mid", alto)
    shutil.copy(next(midi_dir.glob("*.mid")), tmp_path / "written" / "band.mid")  # not four-part
    args = ["evaluate", str(tmp_path / "written"), "--reference", str(tmp_path / "bach"), "--out", str(tmp_path)]
    assert main(args) == 0
    faults = json.loads((tmp_path / "report.json").read_text())["voice_leading"]
    assert faults["generated"] == {"pieces": 2, "crossing": 25.0, "total": 25.0} | {
        name: 0.0 for name in ("parallel_fifths", "parallel_octaves", "range", "spacing")
    }
    assert faults["reference"]["pieces"] == 2 and faults["reference"]["total"] == 0
    assert "voice-leading faults per 100 notes, generated / reference (2 / 2 four-part pieces): 25.0 / 0.0" in (
        capsys.readouterr().out
    )


def test_evaluate_reads_scores_as_references_a_piece_per_tune(midi_dir, tmp_path):
    """A chorale as MXL (four-part: its voice leading counted) and an ABC file of two tunes: three pieces."""
    (tmp_path / "ref").mkdir()
    for name in ("bach/bwv66.6.mxl", "nottingham-dataset/reelsa-c.abc"):
        shutil.copy(corpus_file(name), tmp_path / "ref")
    assert main(["evaluate", str(midi_dir), "--reference", str(tmp_path / "ref"), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["reference_pieces"] == 3 and report["failed"] == []
    assert report["voice_leading"]["reference"]["pieces"] == 1


def _set(folder, seeds):
    rows = []
    for seed in seeds:
        row = piece_features(make_midi(folder / f"{seed}.mid", seed=seed, bars=8))
        row["id"] = str(seed)
        rows.append(row)
    return rows


def test_a_set_overlaps_itself_fully_and_differs_from_another(tmp_path):
    names = SCALAR_FEATURES + HISTOGRAM_FEATURES
    chorale_like = _set(tmp_path, range(8))
    same = compare_sets(chorale_like, chorale_like, names)
    for name in ("pitch_count", "polyphony", "pitch_class_histogram"):
        assert same[name]["overlap"] == pytest.approx(1.0, abs=1e-9)
        assert same[name]["kl"] == pytest.approx(0.0, abs=1e-9)
    # one long note per bar: a different kind of music
    sparse = []
    for i in range(8):
        row = piece_features(_score([(96 * b, 96, 40 + (7 * b + i) % 30) for b in range(8)]))
        row["id"] = f"sparse{i}"
        sparse.append(row)
    other = compare_sets(sparse, chorale_like, names)
    assert other["polyphony"]["overlap"] < 0.5 and other["notes_per_bar"]["kl"] > 1.0


def test_the_memorisation_check_flags_a_training_piece_fed_back(midi_dir, tmp_path):
    generated = tmp_path / "generated"
    generated.mkdir()
    shutil.copy(midi_dir / "piece_2.mid", generated / "copied.mid")
    symusic_score = _score([(24 * i, 24, 60 + (5 * i) % 17) for i in range(64)])
    symusic_score.dump_midi(str(generated / "new.mid"))
    report = evaluate(str(generated), str(midi_dir), tmp_path / "report", log=lambda s: None)
    flagged = report["memorisation"]["flagged"]
    assert len(flagged) == 1 and "copied.mid" in flagged[0]
    pieces = {p["file"].rsplit("/", 1)[-1]: p for p in report["pieces"]}
    assert pieces["copied.mid"]["ngram_share"] == 1.0 and pieces["new.mid"]["ngram_share"] < 0.1
    for name in ("report.json", "report.md", "features.png", "pitch_classes.png"):
        assert (tmp_path / "report" / name).stat().st_size > 100


def test_evaluate_command_reports_likelihood_and_goes_past_a_bad_file(
    trained_run, prepared, midi_dir, tmp_path, capsys
):
    bad = tmp_path / "gen"
    bad.mkdir()
    (bad / "broken.mid").write_bytes(b"MThd garbage")
    shutil.copy(midi_dir / "piece_1.mid", bad / "ok.mid")
    out = tmp_path / "out"
    args = [
        str(bad),
        "--reference",
        str(midi_dir),
        "--out",
        str(out),
        "--run",
        str(trained_run),
        "--data",
        str(prepared),
    ]
    assert main(["evaluate", *args]) == 0
    report = json.loads((out / "report.json").read_text())
    lk = report["likelihood"]
    assert lk["bits_per_note"] == pytest.approx(lk["loss_nats_per_token"] * lk["tokens"] / math.log(2) / lk["notes"])
    assert 0 < lk["bits_per_note"] < 50 and lk["perplexity"] > 1
    assert len(report["failed"]) == 1 and "broken.mid" in report["failed"][0]
    assert "bits/note" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "nowhere"), "--reference", str(midi_dir)]) == 2


def test_training_writes_and_measures_samples_as_it_goes(prepared, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.conftest import TINY

    run = tmp_path / "run"
    sets = [f"data.dataset={prepared}", "train.max_steps=10", "train.sample_interval=5", "train.sample_tokens=64"]
    args = ["train", "--config", str(TINY), "--run-dir", str(run), "--no-progress"]
    assert main([*args, *(x for s in sets for x in ("--set", s))]) == 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_10", "step_5"]
    assert {p.name for p in (run / "samples" / "step_5").iterdir()} >= {"sample_0.mid", "sample_0.png"}
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    measured = [m for m in log if m["split"] == "samples"]
    assert [m["step"] for m in measured] == [5, 10]
    assert {"pitch_count", "scale_consistency", "notes"} <= set(measured[0]) and measured[0]["skipped_tokens"] == 0
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert "samples/piano_roll" in events.Tags()["images"]
