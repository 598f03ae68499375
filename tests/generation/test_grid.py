"""Writing on the voice grid (tokenizer.kind VoiceGrid): free pieces and harmonisations that decode with no
skipped token, the given voice note for note, and requests a grid run cannot do refused by name."""

import pytest
import symusic
import torch
from miditok.utils import get_bars_ticks

from aurl.cli import main
from aurl.config import load_config
from aurl.data.corpus import load_file
from aurl.data.prepare import prepare
from aurl.errors import RequestError
from aurl.generation.generate import Trained
from aurl.generation.requests import Accompany, Generate, Infill, generate
from aurl.training.run import train
from tests.conftest import TINY, corpus_file, make_midi

CHORALES = ["bwv66.6", "bwv1.6", "bwv10.7", "bwv101.7", "bwv102.7", "bwv103.6", "bwv104.6", "bwv108.6"]
GRID = ["tokenizer.kind=VoiceGrid", "data.tasks={continue: 1}", "data.valid_fraction=0.2", "data.test_fraction=0.1"]


@pytest.fixture(scope="module", params=[False, True], ids=["holds", "ties"])
def grid_run(tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("grid")
    (folder / "midi").mkdir()
    for name in CHORALES:
        load_file(corpus_file(f"bach/{name}.mxl"), None)[0].dump_midi(str(folder / "midi" / f"{name}.mid"))
    make_midi(folder / "midi" / "band.mid", seed=3)  # three tracks: not a voice grid
    config = load_config(TINY, [*GRID, f"tokenizer.voice_ties={str(request.param).lower()}"])
    prepare(str(folder / "midi"), folder / "data", config, progress=False, log=lambda s: None)
    config.data.dataset = str(folder / "data")
    train(config, folder / "run", progress=False, log=lambda s: None)
    return folder


def _untrained(run) -> Trained:
    """The run with random weights: whatever the model wants, what the grammar holds must hold."""
    trained = Trained.load(run, "latest")
    torch.manual_seed(0)
    for p in trained.decoder.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return trained


def test_prepare_says_why_a_file_is_not_a_voice_grid(grid_run):
    rejected = (grid_run / "data" / "rejected.jsonl").read_text()
    assert "band.mid" in rejected and "needs 4 tracks; this has 3" in rejected


def test_an_untrained_model_writes_free_pieces_and_harmonisations(grid_run, tmp_path):
    """Random weights: free pieces and harmonisations of a chorale's soprano decode with 0 skipped tokens,
    the soprano comes back note for note and every written voice has notes."""
    trained = _untrained(grid_run / "run")
    for s in generate(trained, tmp_path / "free", log=None, request=Generate(), num=3, max_tokens=200):
        assert s.skipped_tokens == 0 and s.notes > 0
    song = grid_run / "midi" / "bwv66.6.mid"
    original = symusic.Score(str(song))
    request = Accompany(song=str(song), keep=[0], add=[41, 42, 43])
    for s in generate(trained, tmp_path / "acc", log=None, request=request, num=3, max_tokens=300):
        score = symusic.Score(str(s.midi))
        assert s.skipped_tokens == 0
        assert [t.program for t in score.tracks] == [original.tracks[0].program, 41, 42, 43]
        assert [(n.time, n.duration, n.pitch) for n in score.tracks[0].notes] == [
            (n.time, n.duration, n.pitch) for n in original.tracks[0].notes
        ]
        assert all(len(t.notes) > 0 for t in score.tracks[1:])
        assert max(n.end for t in score.tracks for n in t.notes) <= original.end()


@pytest.mark.parametrize("track", [1, None])
def test_an_untrained_model_rewrites_bars_keeping_everything_else(grid_run, tmp_path, track):
    """Random weights: bars 3-4 of the alto (or of every voice) written anew decode with 0 skipped tokens; the
    other voices, and the rewritten ones outside those bars, come back note for note."""
    trained = _untrained(grid_run / "run")
    song = grid_run / "midi" / "bwv66.6.mid"
    original = symusic.Score(str(song))
    start, stop = get_bars_ticks(original)[2], get_bars_ticks(original)[4]
    targets = [track] if track is not None else range(4)
    for s in generate(trained, tmp_path, log=None, request=Infill(song=str(song), bars=(3, 4), track=track), num=2):
        score = symusic.Score(str(s.midi))
        assert s.skipped_tokens == 0
        for i, (old, new) in enumerate(zip(original.tracks, score.tracks, strict=True)):

            def notes(t, outside):
                return [(n.time, n.pitch) for n in t.notes if not outside or not start <= n.time < stop]

            assert notes(new, i in targets) == notes(old, i in targets)
        assert any(start <= n.time < stop for i in targets for n in score.tracks[i].notes)


def test_a_trained_model_harmonises_a_melody_alone(grid_run, tmp_path):
    """A melody of one track (not a chorale part, a double stop in it) takes the top voice and comes back note
    for note; the three voices below are written."""
    melody = symusic.Score(str(grid_run / "midi" / "bwv66.6.mid"))
    melody.tracks = [melody.tracks[0]]
    melody.tracks[0].program = 73
    first = melody.tracks[0].notes[0]
    melody.tracks[0].notes.append(symusic.Note(first.time, first.duration, first.pitch - 4, first.velocity))
    melody.tracks[0].notes.sort()
    path = tmp_path / "melody.mid"
    melody.dump_midi(str(path))
    request = Accompany(song=str(path), add=[0, 0, 32])
    (s,) = generate(grid_run / "run", tmp_path / "out", log=None, request=request, num=1)
    score = symusic.Score(str(s.midi))
    assert s.skipped_tokens == 0 and [t.program for t in score.tracks] == [73, 0, 0, 32]
    assert sorted((n.time, n.pitch) for n in score.tracks[0].notes) == sorted(
        (n.time, n.pitch) for n in melody.tracks[0].notes
    )


def test_requests_a_grid_run_cannot_do_name_the_field(grid_run, capsys):
    trained = Trained.load(grid_run / "run")
    song = str(grid_run / "midi" / "bwv66.6.mid")
    with pytest.raises(RequestError, match="^add: a voice grid run writes 4 voices; with 1 kept, add 3"):
        Accompany(song=song, keep=[0], add=[41]).prepare(trained)
    with pytest.raises(RequestError, match="^settings.sweeps"):
        Accompany(song=song, keep=[0], add=[41, 42, 43], settings={"sweeps": 1}).prepare(trained)
    band = str(grid_run / "midi" / "band.mid")
    with pytest.raises(RequestError, match="^song: a voice grid run rewrites songs in its 4 voices"):
        Infill(song=band, bars=(2, 3), track=1).prepare(trained)
    with pytest.raises(RequestError, match="^controls"):
        Infill(song=song, bars=(2, 3), track=1, controls=["density=3"]).prepare(trained)
    run = str(grid_run / "run")
    assert main(["generate", "--run", run, "--accompany", song, "--keep", "0", "--add", "41", "--out", run]) == 2
    assert "add: a voice grid run writes 4 voices" in capsys.readouterr().err


def test_the_studio_harmonises_and_rewrites_bars_with_a_grid_run(grid_run, tmp_path):
    """Through the studio's API: the run lists its four voices (what "harmonise the top voice" adds beside the
    song's first track), the harmonisation keeps the soprano, the rewrite keeps the other voices, and a
    request for sweeps is a 422 naming the setting."""
    from fastapi.testclient import TestClient

    from aurl.serve.app import create_app
    from tests.serve.test_api import finished

    app = create_app([grid_run / "run"], work_dir=tmp_path / "studio")
    with TestClient(app) as client:
        (model,) = client.get("/api/models").json()["models"]
        assert [t["task"] for t in model["tasks"]] == ["generate", "continue", "accompany", "infill"]
        assert model["programs"] == [40, 41, 42, 43]
        chorale = (grid_run / "midi" / "bwv66.6.mid").read_bytes()
        song = client.post("/api/songs?name=bwv66.6.mid", content=chorale).json()["id"]
        kept = [sorted((n.time, n.pitch) for n in t.notes) for t in symusic.Score.from_midi(chorale).tracks]
        for body in (
            {"task": "accompany", "keep": [0], "add": model["programs"][1:]},
            {"task": "infill", "bars": [2, 3], "track": 1},
        ):
            response = client.post(
                "/api/jobs", json={"model": model["id"], "song": song, "settings": {"num": 1}} | body
            )
            job = finished(client, response.json()["id"])
            assert job["status"] == "done", job
            take = symusic.Score.from_midi(client.get(job["takes"][0]["midi"]).content)
            assert sorted((n.time, n.pitch) for n in take.tracks[0].notes) == kept[0]
            assert len(take.tracks) == 4 and all(len(t.notes) for t in take.tracks)
        body = {"model": model["id"], "task": "accompany", "song": song, "keep": [0], "add": [41, 42, 43]}
        response = client.post("/api/jobs", json=body | {"settings": {"sweeps": 1}})
        assert response.status_code == 422 and "settings.sweeps" in response.json()["detail"]
