"""aurl studio: the HTTP API and the page over one or more trained runs (`aurl serve`).

It calls the same library functions as `aurl generate` (aurl.generation) and owns no musical logic: a
request is checked when it is posted (a bad option or an unusable file is a 422 naming it), then queued for
the worker (aurl.serve.jobs). Files are reached only through ids the server handed out (songs, jobs, takes),
never through a path a client sends, and uploads are parsed by symusic (MIDI) or music21 (scores in notation,
aurl.data.scores), never unpickled. OpenAPI docs: /docs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import symusic
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field

from aurl.data.corpus import MIDI_SUFFIXES, load_file, read_score
from aurl.data.scores import SCORE_SUFFIXES, is_score
from aurl.errors import AurlError, DataError, RequestError, WriteError
from aurl.files import write_together
from aurl.generation.generate import Trained
from aurl.notation import NotationError
from aurl.render import bar_starts
from aurl.serve.catalog import Served, Song, example_files, with_notes
from aurl.serve.jobs import FINISHED, Job, Jobs, Worker

STATIC = Path(__file__).parent / "static"
MAX_TAKES = 8  # takes per request
MAX_TOKENS = 8192  # tokens per take
MEDIA = {
    "mid": "audio/midi",
    "wav": "audio/wav",
    "png": "image/png",
    "json": "application/json",
    "musicxml": "application/vnd.recordare.musicxml+xml",
    "svg": "image/svg+xml",
}
_song_ids = itertools.count(1)


class JobRequest(BaseModel):
    """What to write: a task of one served model (GET /api/models lists each model's tasks and their fields),
    with the task's fields beside these (aurl.generation.requests; songs by their ids) and `settings`, the
    run's generate settings overridden."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(description="a served model's id (GET /api/models)")
    task: str = Field("generate", description="generate, continue, accompany, infill, encode, interpolate")


def no_space(err: WriteError) -> HTTPException:
    """A file the server could not write (its disk full): 507, the sentence naming the file."""
    return HTTPException(507, f"{err}; free space on the server or start it with another --work-dir")


def create_app(
    runs: list[str | Path],
    token: str | None = None,
    work_dir: str | Path | None = None,
    max_upload_mb: float = 4.0,
    checkpoint: str = "best",
    max_rows: int = 32,
    compiled: bool = True,
) -> FastAPI:
    """The studio over `runs` (run directories), writing songs and takes under `work_dir` (a temporary
    folder removed at shutdown when none is given). With `token`, every API call must carry it. With
    `compiled`, each model's decoding step is compiled when it starts (see generation.fast)."""
    temporary = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="aurl-studio-")) if temporary else Path(work_dir)
    (work / "songs").mkdir(parents=True, exist_ok=True)
    served: dict[str, Served] = {}
    worker = Worker(max_rows)  # loads the models too: all torch work runs on its thread (see jobs)
    try:
        for run in runs:
            trained = worker.call(lambda run=run: Trained.load(run, checkpoint, compiled)).result()
            name = base = trained.run_dir.name
            for n in itertools.count(2):
                if name not in served:
                    break
                name = f"{base}-{n}"
            served[name] = Served(name, trained, trained.voices)
            worker.serve(name, trained)
    except BaseException:
        worker.stop()
        raise
    jobs = Jobs(worker)
    songs: dict[str, Song] = {}
    voices = next(iter(served.values())).trained.song_voices  # a score's voices, as an upload's
    for i, source in enumerate(example_files([s.trained for s in served.values()])):
        score, path = with_notes(read_score(source, voices=voices)), source
        if is_score(source):  # kept and served as MIDI, as an upload is
            path = work / "songs" / f"example-{i}.mid"
            score.dump_midi(str(path))
        songs[f"example-{i}"] = Song(f"example-{i}", source.stem, path, score)
    examples = list(songs)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await asyncio.to_thread(worker.stop)
        if temporary:
            shutil.rmtree(work, ignore_errors=True)

    app = FastAPIOffline(title="aurl studio", description=__doc__, lifespan=lifespan)  # /docs without a CDN

    @app.middleware("http")
    async def authorise(request: Request, call_next):
        path = request.url.path
        if token and path.startswith("/api"):  # the page and the docs hold nothing of the user's
            header = request.headers.get("authorization", "")
            given = (
                header.removeprefix("Bearer ") if header.startswith("Bearer ") else request.query_params.get("token")
            )
            if not given or not secrets.compare_digest(given, token):
                sentence = "this studio needs its token: open the link `aurl serve` printed (it ends in ?token=...)"
                return JSONResponse({"detail": sentence}, status_code=401)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError):
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
        return JSONResponse({"detail": f"{field}: {first['msg']}"}, status_code=422)

    def model_of(name: str) -> Served:
        if name not in served:
            raise HTTPException(404, f"model {name!r}: not served here; the served models are {', '.join(served)}")
        return served[name]

    def song_of(song_id: object, field: str = "song") -> Song:
        if not isinstance(song_id, str) or song_id not in songs:
            raise HTTPException(404, f"{field} {song_id!r}: unknown here; upload it again (POST /api/songs)")
        return songs[song_id]

    def add_song(name: str, score: symusic.Score) -> Song:
        """A new song of `score`'s tracks with notes, written under the work folder."""
        score = with_notes(score)
        if not score.tracks:
            raise HTTPException(422, f"{name}: holds no notes to work with")
        song_id = f"s-{next(_song_ids)}-{secrets.token_hex(4)}"
        path = work / "songs" / f"{song_id}.mid"
        try:  # dumps_midi and a Python write: symusic's dump_midi says nothing when the disk is full
            write_together({path: lambda tmp: tmp.write_bytes(score.dumps_midi())})
        except WriteError as err:
            raise no_space(err) from None
        songs[song_id] = Song(song_id, name, path, score)
        return songs[song_id]

    def job_of(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"job {job_id!r}: unknown here (finished jobs are kept for a while only)")
        return job

    def refused(err: AurlError, given: list[Song]) -> HTTPException:
        """An error of the library as the API says it (requests name their fields), songs by their names."""
        text = str(err)
        for found in given:
            text = text.replace(str(found.path), found.name)
        return HTTPException(400 if isinstance(err, DataError) else 422, text)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/models")
    def models() -> dict:
        """The served models: mode, tokenization, tasks, controls and their default settings; and the suffixes of
        the files a song may be uploaded as."""
        return {"models": [s.public() for s in served.values()], "songs": [*MIDI_SUFFIXES, *SCORE_SUFFIXES]}

    @app.get("/api/examples")
    def example_list() -> dict:
        """Built-in example songs (held-out files of the served runs' datasets)."""
        return {
            "examples": [
                {
                    "id": k,
                    "name": songs[k].name,
                    "tracks": len(songs[k].score.tracks),
                    "bars": len(bar_starts(songs[k].score)),
                }
                for k in examples
            ]
        }

    @app.post("/api/songs", status_code=201)
    async def upload(request: Request, name: str = "upload.mid", model: str | None = None) -> dict:
        """Upload a MIDI file, or a score as MusicXML, MXL, ABC or Humdrum (by the suffix of `name`), the request
        body, raw bytes, to work with; returns its tracks and notes. A score's voices take the programs of
        `model`'s voices (default: the first served model's)."""
        limit = int(max_upload_mb * 2**20)
        too_big = HTTPException(413, f"{name}: larger than this studio's {max_upload_mb:g} MB limit for uploads")
        if int(request.headers.get("content-length") or 0) > limit:
            raise too_big
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise too_big
        name = Path(name).name
        voices = model_of(model or next(iter(served))).trained.song_voices
        with tempfile.TemporaryDirectory() as scratch:  # the readers read files, by their suffix
            path = Path(scratch) / f"upload{Path(name).suffix.lower()}"
            path.write_bytes(bytes(data))
            # the limits aurl prepare applies; music21 takes a second or more on a long score
            score, reason, _ = await asyncio.to_thread(load_file, path, None, voices)
        if score is None:
            raise HTTPException(422, f"{name}: {reason}")
        return add_song(name, score).public()

    @app.get("/api/songs/{song_id}")
    def song(song_id: str) -> dict:
        return song_of(song_id, "").public()

    @app.get("/api/songs/{song_id}/midi")
    def song_midi(song_id: str) -> FileResponse:
        found = song_of(song_id, "")
        return FileResponse(found.path, media_type=MEDIA["mid"], filename=f"{Path(found.name).stem}.mid")

    @app.post("/api/jobs", status_code=202)
    def submit(body: JobRequest) -> dict:
        """Queue a piece of work; follow it at /api/jobs/{id}/events or poll /api/jobs/{id}."""
        model = model_of(body.model)
        if body.task not in model.tasks:
            raise HTTPException(422, f"task: model {model.id} does {', '.join(model.tasks)}, not {body.task}")
        cls = model.tasks[body.task]
        fields = dict(body.model_extra or {})
        given = {name: song_of(fields[name], name) for name in cls.song_fields() if name in fields}
        fields |= {name: str(found.path) for name, found in given.items()}
        try:
            request = cls.of({"task": body.task, **fields})
            settings = model.trained.settings(request.settings, body.task)
            if settings.num > MAX_TAKES or settings.max_tokens > MAX_TOKENS:
                raise RequestError("settings.num", f" / max_tokens: at most {MAX_TAKES} takes of {MAX_TOKENS} tokens")
            todo = request.prepare(model.trained)
        except AurlError as err:
            raise refused(err, list(given.values())) from None
        return jobs.submit(Job(model.id, body.task, todo, work / "jobs")).public()

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str) -> dict:
        return job_of(job_id).public()

    @app.delete("/api/jobs/{job_id}")
    def cancel(job_id: str) -> dict:
        """Cancel a job; the takes it has not finished are dropped."""
        found = job_of(job_id)
        if found.status not in FINISHED:
            jobs.cancel(found)
        return found.public()

    @app.get("/api/jobs/{job_id}/events")
    async def events(job_id: str, request: Request) -> StreamingResponse:
        """Server-sent events: `progress` (tokens, tokens/s, the first take's notes so far) a few times a
        second, then one `done`, `failed` or `cancelled` carrying the job."""
        found = job_of(job_id)

        async def stream():
            seen, changed = -1, asyncio.Event()
            watching = (asyncio.get_running_loop(), changed)
            found.streams.append(watching)  # Job.changed sets `changed`
            try:
                while not await request.is_disconnected():
                    changed.clear()
                    if found.version != seen:
                        seen = found.version
                        if found.status in FINISHED:
                            yield f"event: {found.status}\ndata: {json.dumps(found.public())}\n\n"
                            return
                        progress = {"tokens": found.tokens, "tokens_per_second": round(found.tokens_per_second, 1)}
                        yield f"event: progress\ndata: {json.dumps(progress | {'notes': found.notes})}\n\n"
                    with contextlib.suppress(TimeoutError):  # wake up now and then to notice a closed page
                        await asyncio.wait_for(changed.wait(), 1.0)
            finally:
                found.streams.remove(watching)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/api/jobs/{job_id}/takes/{index}/song", status_code=201)
    def take_as_song(job_id: str, index: int) -> dict:
        """A finished take as a new song (as if its MIDI file were uploaded), e.g. to rewrite some of its bars;
        its tracks without notes are dropped, as from every song."""
        found = job_of(job_id)
        if not 0 <= index < len(found.takes):
            held = f"takes 0-{len(found.takes) - 1}" if found.takes else f"no takes ({found.status})"
            raise HTTPException(404, f"take {index}: job {job_id} has {held}")
        midi = found.takes[index].midi
        return add_song(f"{found.model}-{found.id}-take{index}.mid", symusic.Score(str(midi))).public()

    @app.get("/api/jobs/{job_id}/takes/{name}")
    def take(job_id: str, name: str) -> FileResponse:
        """A finished take: {i}.mid, {i}.wav, {i}.png, {i}.musicxml, {i}.svg (its score engraved) or {i}.json (its
        notes for drawing), or a version of it before sweep k + 1 ({i}_sweep_{k}.mid and so on); all but the MIDI
        and the notes are rendered on their first request."""
        found = job_of(job_id)
        match = re.fullmatch(r"(\d+)(?:_sweep_(\d+))?\.(mid|wav|png|json|musicxml|svg)", name)
        index = int(match[1]) if match else len(found.takes)
        version = int(match[2]) if match and match[2] is not None else None
        if index >= len(found.takes) or version is not None and version >= len(found.takes[index].versions):
            raise HTTPException(
                404,
                f"take {name!r}: job {job_id} has takes 0-{len(found.takes) - 1} as "
                ".mid/.wav/.png/.musicxml/.svg/.json (and I_sweep_K.mid and so on where sweeps were kept)",
            )
        kind = match[3]
        try:
            path = found.file(index, kind, version)
        except WriteError as err:
            raise no_space(err) from None
        except NotationError as err:  # the take has no score; its other files still serve
            raise HTTPException(422, str(err)) from None
        except AurlError as err:  # e.g. no SoundFont on this server: the take's other files still serve
            raise HTTPException(503, str(err)) from None
        stem = f"{found.model}-{found.id}-take{index}{'' if version is None else f'-sweep{version}'}"
        download = f"{stem}.{kind}" if kind in ("mid", "musicxml") else None
        return FileResponse(path, media_type=MEDIA[kind], filename=download)

    return app
