"""The studio's API through its ASGI app: every endpoint, the error codes, path traversal, the token,
cancelling, and requests decoded together giving what each gets alone."""

from __future__ import annotations

import io
import json
import time
import wave
from pathlib import Path

import pytest
import symusic
from fastapi.testclient import TestClient
from miditok.utils import get_bars_ticks

from aurl.cli import main
from aurl.data.corpus import read_score
from aurl.errors import DataError
from aurl.generation.generate import Trained
from aurl.generation.requests import Generate, generate
from aurl.render import RenderError
from aurl.serve.app import create_app
from aurl.serve.jobs import Job, Worker
from tests.conftest import CXX, EMPTY_SCORE, abc_tune, make_midi

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SMALL = {"num": 1, "max_tokens": 48}


@pytest.fixture(scope="module")
def client(trained_run, mmm_run, tmp_path_factory):
    app = create_app([trained_run, mmm_run], work_dir=tmp_path_factory.mktemp("studio"), max_upload_mb=0.05)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def song(client, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("song") / "mine.mid"
    make_midi(path, seed=42, bars=8, drums=False)
    response = client.post("/api/songs?name=mine.mid", content=path.read_bytes())
    assert response.status_code == 201, response.text
    return response.json()


def finished(client: TestClient, job_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def run(client: TestClient, body: dict) -> dict:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 202, response.text
    job = finished(client, response.json()["id"])
    assert job["status"] == "done", job
    return job


def notes_of(client: TestClient, url: str) -> list[list]:
    score = symusic.Score.from_midi(client.get(url).content)
    return [sorted((n.time, n.duration, n.pitch) for n in t.notes) for t in score.tracks]


def test_models_and_examples(client):
    models = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    tasks = {name: [task["task"] for task in m["tasks"]] for name, m in models.items()}
    assert tasks["tiny"] == tasks["mmm"] == ["generate", "continue", "accompany", "infill"]  # not a latent model
    accompany = models["tiny"]["tasks"][2]["fields"]  # what the page asks for, and how
    assert accompany["song"]["song"] and accompany["add"]["required"] and not accompany["keep"]["required"]
    assert models["mmm"]["tokenization"] == "MMM" and "density" in models["mmm"]["controls"]
    assert models["tiny"]["settings"]["max_tokens"] > 0 and models["tiny"]["parameters"] > 0
    assert models["tiny"]["settings"]["meter"] == "hold" and {"4/4", "3/4"} <= set(models["tiny"]["meters"])
    assert models["tiny"]["decoding"] == models["mmm"]["decoding"] == ("compiled" if CXX else "eager")
    # the voices each run was trained on (its corpus: melody, bass, drums), the top one first
    assert models["tiny"]["programs"] == models["mmm"]["programs"] == [0, 33, -1]
    examples = client.get("/api/examples").json()["examples"]
    assert examples and all(e["tracks"] > 0 and e["bars"] > 0 for e in examples)
    song = client.get(f"/api/songs/{examples[0]['id']}").json()
    assert song["notes"]["tracks"][0]["notes"] and song["notes"]["bars"][0] == 0.0


def test_generate_gives_every_format_and_equals_the_cli(client, trained_run, tmp_path):
    job = run(client, {"model": "tiny", "settings": {"num": 2, "max_tokens": 64, "seed": 7}})
    assert len(job["takes"]) == 2 and job["tokens"] > 0
    take = job["takes"][0]
    assert take["notes"] > 0
    with wave.open(io.BytesIO(client.get(take["wav"]).content)) as audio:
        assert audio.getnframes() > 0
    assert client.get(take["png"]).content.startswith(b"\x89PNG")
    drawn = client.get(take["notes_url"]).json()
    assert sum(len(t["notes"]) for t in drawn["tracks"]) == take["notes"]
    download = client.get(take["midi"])
    assert "attachment" in download.headers["content-disposition"]
    score = client.get(take["musicxml"])  # the take as a score, written on its first request
    assert score.status_code == 200 and "attachment" in score.headers["content-disposition"]
    assert b"<score-partwise" in score.content and b"<note" in score.content
    # The studio calls what `aurl generate` calls: the same seed gives the same pieces.
    samples = generate(trained_run, tmp_path, "best", log=lambda s: None, num=2, max_tokens=64, seed=7)
    for take, sample in zip(job["takes"], samples, strict=True):
        alone = symusic.Score(str(sample.midi))
        assert notes_of(client, take["midi"]) == [
            sorted((n.time, n.duration, n.pitch) for n in t.notes) for t in alone.tracks
        ]


def test_requests_arriving_together_are_batched_and_get_what_they_get_alone(client):
    # A long job (unconstrained: never batched with constrained ones) keeps the worker busy while three
    # more arrive; those are decoded as one batch.
    settings = {"num": 1, "max_tokens": 600, "min_tokens": 600, "constrained": False}
    first = client.post("/api/jobs", json={"model": "tiny", "settings": settings})
    bodies = [
        {"model": "tiny", "settings": {"num": n, "max_tokens": 40 + 10 * n, "seed": n, "temperature": 0.8 + n / 10}}
        for n in (1, 2, 3)
    ]
    ids = [client.post("/api/jobs", json=body).json()["id"] for body in bodies]
    together = [finished(client, i) for i in ids]
    finished(client, first.json()["id"])
    assert all(job["status"] == "done" for job in together)
    assert all(job["batch"] == 3 for job in together), [job["batch"] for job in together]
    for body, job in zip(bodies, together, strict=True):
        alone = run(client, body)
        assert alone["batch"] == 1
        for a, b in zip(job["takes"], alone["takes"], strict=True):
            assert notes_of(client, a["midi"]) == notes_of(client, b["midi"])
            assert a["tokens"] == b["tokens"]


def test_progress_streams_notes_and_ends_with_the_job(client):
    settings = {"num": 1, "max_tokens": 4000, "min_tokens": 4000}
    job = client.post("/api/jobs", json={"model": "tiny", "settings": settings}).json()
    events, drawn = [], None
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            elif line.startswith("data: ") and events[-1] == "progress" and drawn is None:
                progress = json.loads(line.removeprefix("data: "))
                if progress["notes"] and progress["notes"]["tracks"]:  # notes appear while it writes
                    drawn = progress
                    assert progress["tokens"] > 0 and progress["tokens_per_second"] > 0
                    client.delete(f"/api/jobs/{job['id']}")
    assert drawn is not None and events[-1] == "cancelled" and events.count("cancelled") == 1
    with client.stream("GET", f"/api/jobs/{run(client, {'model': 'tiny', 'settings': SMALL})['id']}/events") as done:
        assert [line for line in done.iter_lines() if line.startswith("event: ")] == ["event: done"]


@pytest.mark.parametrize("model", ["tiny", "mmm"])  # one time-ordered stream, and multitrack
def test_continue_accompany_and_infill_keep_the_song(client, song, model):
    kept = notes_of(client, f"/api/songs/{song['id']}/midi")
    job = run(client, {"model": model, "task": "continue", "song": song["id"], "settings": {**SMALL, "primer_bars": 2}})
    assert job["takes"][0]["notes"] > 0
    job = run(
        client, {"model": model, "task": "accompany", "song": song["id"], "keep": [0], "add": [41], "settings": SMALL}
    )
    result = notes_of(client, job["takes"][0]["midi"])
    assert result[0] == kept[0] and len(result) == 2
    drawn = client.get(job["takes"][0]["notes_url"]).json()["tracks"]  # the page greys what was given
    assert all(n[4] == 1 for n in drawn[0]["notes"]) and not any(n[4] for n in drawn[1]["notes"])
    job = run(
        client,
        {"model": model, "task": "infill", "song": song["id"], "bars": [2, 3], "track": 1, "settings": {"num": 1}},
    )
    result = notes_of(client, job["takes"][0]["midi"])
    assert result[0] == kept[0]  # the other track is untouched
    if model == "tiny":  # revision sweeps rewrite the new track with the melody given: the melody stays
        settings = {**SMALL, "num": 1, "sweeps": 2, "keep_sweeps": True}
        job = run(
            client,
            {"model": model, "task": "accompany", "song": song["id"], "keep": [0], "add": [41], "settings": settings},
        )
        take = job["takes"][0]
        assert job["status"] == "done" and notes_of(client, take["midi"])[0] == kept[0]
        # the take before each sweep is kept and served like the take: the melody in every version
        assert [v["name"] for v in take["versions"]] == ["first pass", "after sweep 1"]
        for version in take["versions"]:
            assert notes_of(client, version["midi"])[0] == kept[0]
            assert client.get(version["notes_url"]).json()["tracks"][0]["notes"]
        assert client.get(take["midi"].replace("/0.mid", "/0_sweep_2.mid")).status_code == 404


def test_a_take_becomes_a_song_whose_bars_can_be_rewritten(client, song):
    accompany = {"model": "tiny", "task": "accompany", "song": song["id"], "keep": [0], "add": [41]}
    job = run(client, accompany | {"settings": SMALL})
    take = job["takes"][0]
    response = client.post(take["song"])
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["name"] == f"tiny-{job['id']}-take0.mid"
    taken = [t for t in notes_of(client, take["midi"]) if t]  # a song keeps the tracks with notes
    assert notes_of(client, f"/api/songs/{made['id']}/midi") == taken
    body = {"model": "tiny", "task": "infill", "song": made["id"], "track": 0, "settings": SMALL}
    job = run(client, body | {"bars": [2, 3]})
    rewritten = notes_of(client, job["takes"][0]["midi"])
    start, stop = get_bars_ticks(symusic.Score.from_midi(client.get(take["midi"]).content))[1:4:2]  # bars 2-3
    assert [n for n in rewritten[0] if not start <= n[0] < stop] == [n for n in taken[0] if not start <= n[0] < stop]
    assert rewritten[1:] == taken[1:]  # the other tracks note for note
    # what the page shows of a bad choice: one sentence naming the field, the song by its name
    for bars, words in (([2, 99], f"bars 2-99: {made['name']} has bars 1-"), (None, "bars: infill needs it")):
        response = client.post("/api/jobs", json=body | ({"bars": bars} if bars else {}))
        assert response.status_code == 422 and response.json()["detail"].startswith(words), response.text
    for url, words in (
        (f"/api/jobs/{job['id']}/takes/5/song", f"take 5: job {job['id']} has takes 0-0"),
        ("/api/jobs/j-0/takes/0/song", "job 'j-0': unknown here"),
    ):
        response = client.post(url)
        assert response.status_code == 404 and response.json()["detail"].startswith(words), response.text


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"model": "tiny", "settings": {"temperature": -1}}, 422, "settings.temperature"),
        ({"model": "tiny", "settings": {"colour": 3}}, 422, "colour"),
        ({"model": "tiny", "settings": {"num": 99}}, 422, "settings.num"),
        ({"model": "tiny", "task": "accompany", "song": "x"}, 404, "song 'x'"),
        ({"model": "tiny", "task": "continue"}, 422, "song"),
        ({"model": "tiny", "task": "sing"}, 422, "task"),
        ({"model": "tiny", "bars": "x"}, 422, "bars"),
        ({"model": "tiny", "settings": {"meter": "7/16"}}, 422, "settings.meter 7/16: not a time signature"),
        ({"model": "tiny", "settings": {"sweeps": 1}}, 422, "settings.sweeps: "),
        ({"model": "tiny", "settings": {"min_bars": 8, "max_bars": 4}}, 422, "generate.min_bars (8) must not exceed"),
        ({"model": "tiny", "task": "accompany", "song": "SONG", "add": [0], "settings": {"min_bars": 8}}, 422, "bars"),
        ({"model": "mmm", "task": "accompany", "song": "SONG", "add": [0], "settings": {"sweeps": 1}}, 422, "sweeps"),
        ({"model": "nope"}, 404, "nope"),
        ({"model": "tiny", "task": "continue", "song": "s-unknown"}, 404, "s-unknown"),
        ({"model": "mmm", "task": "infill", "song": "SONG"}, 422, "bars"),
        ({"model": "mmm", "task": "accompany", "song": "SONG", "keep": [5], "add": [0]}, 422, "keep 5"),
        ({"model": "mmm", "task": "accompany", "song": "SONG", "add": [0], "controls": ["loud=3"]}, 422, "loud"),
    ],
)
def test_bad_options_are_named(client, song, body, status, words):
    body = json.loads(json.dumps(body).replace("SONG", song["id"]))
    response = client.post("/api/jobs", json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail and "\n" not in detail


def test_a_score_is_uploaded_its_voice_on_the_models_top_voice(client, tmp_path):
    tune = abc_tune(tmp_path)
    response = client.post("/api/songs?name=ritter.abc&model=tiny", content=tune.read_bytes())
    assert response.status_code == 201, response.text
    tracks = response.json()["notes"]["tracks"]
    assert [t["program"] for t in tracks] == [0]  # the tiny run's melody, where a corpus melody takes 40
    assert [n[2] for n in tracks[0]["notes"]] == [n.pitch for n in read_score(tune).tracks[0].notes]
    assert client.get("/api/models").json()["songs"] == [".mid", ".midi", ".mxl", ".musicxml", ".xml", ".krn", ".abc"]


BAD_SCORES = [("broken.musicxml", "<score-partwise><part-list>"), ("empty.xml", EMPTY_SCORE)]


@pytest.mark.parametrize(("name", "text"), BAD_SCORES)
def test_a_broken_or_empty_score_is_a_422_saying_what_the_command_line_says(client, tmp_path, name, text):
    (tmp_path / name).write_text(text)
    response = client.post(f"/api/songs?name={name}", content=text.encode())
    with pytest.raises(DataError) as err:
        read_score(tmp_path / name)
    assert response.status_code == 422 and f"{tmp_path}/{response.json()['detail']}" == str(err.value)


def test_bad_uploads(client, tmp_path):
    response = client.post("/api/songs?name=noise.mid", content=b"MThd\x00\x00\x00\x06garbage")
    assert response.status_code == 422 and "noise.mid" in response.json()["detail"]
    empty = symusic.Score(480)
    empty.tracks.append(symusic.Track())
    empty.dump_midi(str(tmp_path / "empty.mid"))
    response = client.post("/api/songs?name=empty.mid", content=(tmp_path / "empty.mid").read_bytes())
    assert response.status_code == 422 and "no notes" in response.json()["detail"]
    # A 40-byte file whose one note starts 35 hours in: refused as aurl prepare refuses it, never decoded
    absurd = b"\x00\x90\x3c\x40\x84\xe2\xad\x00\x90\x3e\x40\x01\x80\x3e\x40\x00\xff\x2f\x00"
    header = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x01MTrk" + len(absurd).to_bytes(4, "big")
    response = client.post("/api/songs?name=absurd.mid", content=header + absurd)
    assert response.status_code == 422 and response.json()["detail"].startswith("absurd.mid: too long: "), response.text
    response = client.post("/api/songs?name=big.mid", content=b"\x00" * 60_000)
    assert response.status_code == 413 and "MB" in response.json()["detail"]


def test_nothing_outside_the_studio_is_reachable(client, song, trained_run):
    job = run(client, {"model": "tiny", "settings": SMALL})
    for url in [
        f"/api/jobs/{job['id']}/takes/..%2F..%2Fconfig.yaml",
        f"/api/jobs/{job['id']}/takes/0.yaml",
        f"/api/jobs/{job['id']}/takes/9.mid",
        "/api/songs/..%2F..%2Fetc%2Fpasswd/midi",
        "/api/jobs/..%2Fsongs/takes/0.mid",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2F..%2Fcli.py",
    ]:
        response = client.get(url)
        assert response.status_code == 404, (url, response.status_code)
        assert b"create_app" not in response.content and b"import" not in response.content
    # an upload's name is a label: it never becomes a path
    response = client.post(
        "/api/songs?name=../../escaped.mid", content=client.get(f"/api/songs/{song['id']}/midi").content
    )
    assert response.status_code == 201 and response.json()["name"] == "escaped.mid"
    assert not (trained_run.parent / "escaped.mid").exists()


def test_cancel(client):
    job = client.post(
        "/api/jobs", json={"model": "tiny", "settings": {"num": 1, "max_tokens": 5000, "min_tokens": 5000}}
    ).json()
    queued = client.post(
        "/api/jobs", json={"model": "tiny", "task": "generate", "settings": {**SMALL, "constrained": False}}
    ).json()
    time.sleep(0.3)
    assert client.delete(f"/api/jobs/{queued['id']}").json()["status"] == "cancelled"
    client.delete(f"/api/jobs/{job['id']}")
    assert finished(client, job["id"], timeout=10)["status"] == "cancelled"
    assert client.get("/api/jobs/j-nope").status_code == 404


def test_a_failing_request_leaves_the_server_up(client, monkeypatch):
    import aurl.serve.jobs

    def broken(*args, **kwargs):
        raise RuntimeError("drawing on fire")

    monkeypatch.setattr(aurl.serve.jobs, "drawing", broken)
    response = client.post("/api/jobs", json={"model": "tiny", "settings": SMALL})
    job = finished(client, response.json()["id"])
    assert job["status"] == "failed" and "drawing on fire" in job["error"]
    monkeypatch.undo()
    job = run(client, {"model": "tiny", "settings": SMALL})
    monkeypatch.setattr(aurl.serve.jobs, "render_wav", lambda *a: (_ for _ in ()).throw(RenderError("no SoundFont")))
    response = client.get(job["takes"][0]["wav"])
    assert response.status_code == 503 and response.json()["detail"] == "no SoundFont"
    assert client.get(job["takes"][0]["midi"]).status_code == 200


def test_token(trained_run, tmp_path):
    app = create_app([trained_run], token="s3cret", work_dir=tmp_path)
    with TestClient(app) as c:
        for url in ("/", "/docs", "/openapi.json"):  # the page and the docs hold nothing of the user's
            assert c.get(url).status_code == 200
        for url in ("/api/models", "/api/examples", "/api/jobs/j-1", "/api/songs/s-1/midi"):
            assert c.get(url).status_code == 401
        assert c.get("/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/models?token=s3cret").status_code == 200
        assert "token" in c.get("/api/models").json()["detail"]


def test_serve_refuses_a_busy_port(trained_run, capsys):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["serve", "--run", str(trained_run), "--port", str(port)]) == 2
    assert f"--port {port}" in capsys.readouterr().err
    assert main(["serve", "--run", str(trained_run / "missing")]) == 2


def test_a_stopped_worker_cancels_its_jobs_and_ends(trained_run, tmp_path):
    """The server's shutdown stops each worker before the process exits (a process that exits while a
    worker thread is inside torch aborts): queued and running jobs end cancelled, and the thread ends."""
    worker = Worker(max_rows=1)  # one row per batch: the second job stays queued
    trained = worker.call(lambda: Trained.load(trained_run)).result()
    worker.serve("tiny", trained)
    request = Generate(settings={"num": 1, "max_tokens": 4000, "min_tokens": 4000})
    jobs = [Job("tiny", "generate", request.prepare(trained), tmp_path) for _ in range(2)]
    for job in jobs:
        worker.submit(job)
    while jobs[0].status != "running" or jobs[0].tokens == 0:
        time.sleep(0.01)
    worker.stop()
    assert not worker.thread.is_alive()
    assert [job.status for job in jobs] == ["cancelled", "cancelled"]


def test_a_full_disk_is_a_507_naming_the_file_and_leaves_no_part_of_it(client, tmp_path, full_disk):
    path = tmp_path / "mine.mid"
    make_midi(path, seed=7, bars=4, drums=False)
    disk = full_disk("/songs/", 100)
    response = client.post("/api/songs?name=mine.mid", content=path.read_bytes())
    assert response.status_code == 507, response.text
    failed = Path(disk.failed)
    assert response.json()["detail"] == (
        f"writing {failed.parent / failed.name.removeprefix('.').replace('.tmp', '')}: No space left on device; "
        "free space on the server or start it with another --work-dir"
    )
    assert not [p.name for p in failed.parent.iterdir() if p.name.startswith(".")]  # no part of it left
    disk.undo()
    take = run(client, {"model": "tiny", "settings": SMALL})["takes"][0]
    full_disk(".png", 0)  # the piano roll is drawn on its first request
    response = client.get(take["png"])
    assert response.status_code == 507 and "sample_0.png: No space left on device" in response.json()["detail"]
