"""The `aurl` command: parse arguments, call the library, print results. Errors print as one line, exit 2."""

from __future__ import annotations

import argparse
import errno
import sys

from aurl.cli_parser import build_parser
from aurl.errors import AurlError, WriteError


def _say(message: str) -> None:
    """Progress messages appear at once, even when stdout is a file or a pipe."""
    print(message, flush=True)


def _prepare(args: argparse.Namespace) -> None:
    from aurl.config import load_config
    from aurl.data.prepare import prepare

    if args.workers < 1:
        raise AurlError(f"--workers {args.workers}: must be at least 1")
    config = load_config(args.config, args.overrides)
    report = prepare(args.source, args.out, config, workers=args.workers, log=_say, progress=not args.no_progress)
    print(report.table())
    if report.profile is not None:
        print(f"\n{report.profile.table()}\n{report.profile.suggestion()}")
    for warning in report.warnings:
        print(warning)
    print(f"prepared dataset: {report.out}")


def _profile_steps(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    start, _, stop = text.partition(":")
    if not (start.isdigit() and stop.isdigit() and int(start) < int(stop)):
        raise AurlError(f"--profile-steps {text!r}: expected A:B with A < B, e.g. 10:15")
    return int(start), int(stop)


def _train(args: argparse.Namespace) -> None:
    from aurl.config import load_config, updated
    from aurl.training.distributed import DistEnv
    from aurl.training.run import resume_config, train

    if args.resume and args.overwrite:
        raise AurlError("--resume and --overwrite contradict each other; choose one")
    if args.resume and not args.run_dir:
        raise AurlError("--resume needs --run-dir: the run to continue")
    if args.resume and args.config:
        raise AurlError(
            "--resume continues with the run's own config.yaml; change values with --set instead of --config"
        )
    if args.resume and args.init_from:
        raise AurlError("--resume continues a run from its own checkpoint; --init-from starts a new one: choose one")
    config = resume_config(args.run_dir, args.overrides) if args.resume else load_config(args.config, args.overrides)
    if args.init_from is not None:
        config.train = updated(config.train, {"init_from": args.init_from}, "train")
    run_dir = args.run_dir or f"runs/{config.name}"
    main_rank = DistEnv.from_environment().is_main
    hook = None
    if config.train.sample_interval:
        from aurl.evaluation.during_training import TrainingSamples

        hook = TrainingSamples(config, run_dir)
    train(
        config,
        run_dir,
        overwrite=args.overwrite,
        resume=args.resume,
        progress=not args.no_progress,
        log=_say if main_rank else (lambda s: None),
        profile_steps=_profile_steps(args.profile_steps),
        sample_hook=hook,
    )
    if main_rank:
        print(f"run directory: {run_dir}")


def _tracks(text: str, flag: str) -> list[int]:
    words = [w.strip() for w in text.split(",")]
    if not all(w.isdigit() for w in words):
        raise AurlError(f"{flag} {text}: expected track numbers separated by commas, e.g. 0,1")
    return [int(w) for w in words]


def _programs(words: list[str]) -> list[int]:
    out = []
    for word in words:
        if word.lower() == "drums":
            out.append(-1)
        elif word.isdigit() and int(word) < 128:
            out.append(int(word))
        else:
            raise AurlError(f"--add {word}: a General MIDI program 0-127 or 'drums'")
    return out


def _bars(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    if not (first.isdigit() and (last or first).isdigit()):
        raise AurlError(f"--bars {text}: expected A-B (1-based bar numbers), e.g. 9-12")
    return int(first), int(last or first)


# Where the generate command's flags meet the requests' fields (aurl.generation.requests), in one place:
# the flag that names a task's song, and the flags of the other fields.
TASK_FLAGS = {"continue": "--primer", "accompany": "--accompany", "infill": "--infill", "encode": "--encode"}
TASK_FLAGS |= {"interpolate": "--interpolate", "generate": "plain generation"}
FIELD_FLAGS = {"keep": "--keep", "add": "--add", "bars": "--bars", "track": "--track", "controls": "--control"}


def _flag(field: str, task: str) -> str:
    """The flag a request's field comes from."""
    name = field.removeprefix("settings.")
    if name != field:
        return "--unconstrained" if name == "constrained" else f"--{name.replace('_', '-')}"
    if field in ("song", "to", "task"):
        return TASK_FLAGS[task]
    return FIELD_FLAGS.get(field, field)


def _task(args: argparse.Namespace) -> str:
    """The task the generate command's flags name (plain generation without any)."""
    named = [task for task, flag in TASK_FLAGS.items() if getattr(args, flag.removeprefix("--"), None)]
    if len(named) > 1:
        raise AurlError(f"{' and '.join(TASK_FLAGS[t] for t in named)}: choose one")
    return named[0] if named else "generate"


def _request(args: argparse.Namespace, task: str):
    """The request the generate command's flags ask for."""
    from aurl.config import GenerateConfig
    from aurl.generation.requests import REQUESTS

    song = getattr(args, TASK_FLAGS[task].removeprefix("--"), None)
    fields = {"song": song[0], "to": song[1]} if task == "interpolate" else {"song": song}
    fields |= {
        "keep": _tracks(args.keep, "--keep") if args.keep else None,
        "add": _programs(args.add) if args.add else None,
        "bars": _bars(args.bars) if args.bars else None,
        "track": args.track,
        "controls": [" ".join(words) for words in args.control] or None,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    cls = REQUESTS[task]
    for name in fields:
        if name not in cls.model_fields:
            where = " or ".join(TASK_FLAGS[t] for t, other in REQUESTS.items() if name in other.model_fields)
            raise AurlError(f"{_flag(name, task)} goes with {where}, not {TASK_FLAGS[task]}")
    settings = {k: getattr(args, k) for k in GenerateConfig.model_fields if getattr(args, k, None) is not None}
    return cls.of({**fields, "settings": settings})


def _generate(args: argparse.Namespace) -> None:
    from aurl.errors import RequestError
    from aurl.generation.generate import Trained

    task = _task(args)
    try:
        request = _request(args, task)
        trained = Trained.load(args.run, args.checkpoint, args.compiled)
        samples = request.write(trained, args.out, _say, args.wav, args.soundfont)
    except RequestError as err:
        raise AurlError(f"{_flag(err.field, task)}{err.detail}") from None
    print(f"{len(samples)} samples in {samples[0].midi.parent}")


def _evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from aurl.evaluation.report import evaluate

    evaluate(
        args.generated,
        args.reference,
        args.out,
        train=args.train,
        run=args.run,
        data=args.data,
        split=args.split,
        copy_threshold=args.copy_threshold,
        log=_say,
    )
    print((Path(args.out) / "report.md").read_text(), end="")


def _render(args: argparse.Namespace) -> None:
    from pathlib import Path

    from aurl.data.corpus import read_score
    from aurl.notation import engraved, musicxml
    from aurl.render import piano_roll, render_wav

    chosen = args.png or args.wav or args.musicxml or args.score
    png, wav = (args.png, args.wav) if chosen else (True, True)
    failed = []
    for name in args.files:
        midi = Path(name)
        stem = (Path(args.out) if args.out else midi.parent) / midi.stem
        stem.parent.mkdir(parents=True, exist_ok=True)
        try:  # one bad file does not stop the others
            if args.musicxml and stem.with_suffix(".musicxml").resolve() == midi.resolve():
                raise AurlError(f"{midi}: --musicxml would write over it; pass --out DIR")
            written = [piano_roll(read_score(midi), stem.with_suffix(".png"), midi.name)] if png else []
            if wav:
                written.append(render_wav(midi, stem.with_suffix(".wav"), args.soundfont))
            xml = musicxml(midi, stem.with_suffix(".musicxml")) if args.musicxml else None
            if args.score:
                written.append(engraved(midi, stem.with_suffix(".svg"), xml))
            written += [xml] if xml else []
            print("  ".join(str(p) for p in written))
        except AurlError as err:
            print(f"aurl render: {err}", file=sys.stderr)
            failed.append(name)
    if failed:
        raise AurlError(f"{len(failed)} of {len(args.files)} files not rendered (see above)")


def _corpora(args: argparse.Namespace) -> None:
    from aurl.data.builtin import corpora
    from aurl.data.corpus import cache_dir

    rows = corpora()
    width = max(len(row.name) for row in rows)
    print(f"{'corpus':<{width}}  {'pieces':>6}  {'parts':<16}  {'converted':<9}  description")
    for row in rows:
        converted = "yes" if row.cache else "no"
        print(f"{row.name:<{width}}  {row.pieces:>6}  {row.parts:<16}  {converted:<9}  {row.description}")
    print(f"converted into {cache_dir()}/NAME (AURL_CACHE) on first use, e.g. aurl prepare builtin:essen --out DIR")


def _serve(args: argparse.Namespace) -> None:
    import ipaddress
    import socket

    import uvicorn

    from aurl.serve.app import create_app

    if args.max_batch < 1 or args.max_upload_mb <= 0 or not 0 < args.port < 65536:
        raise AurlError("--max-batch, --max-upload-mb and --port: give positive values (a port below 65536)")
    try:
        local = args.host == "localhost" or ipaddress.ip_address(args.host).is_loopback
    except ValueError:  # a host name
        local = False
    try:  # a busy port is named in one line here, not in uvicorn's log
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as err:
        reason = str(err.strerror).split(" (while")[0]
        raise AurlError(
            f"--host {args.host} --port {args.port}: cannot listen there ({reason}); pick another"
        ) from None
    if not local and not args.token:
        print(
            f"aurl serve: warning: listening on {args.host} without --token: anyone who can reach it can use it",
            file=sys.stderr,
        )
    app = create_app(
        args.run, args.token, args.work_dir, args.max_upload_mb, args.checkpoint, args.max_batch, not args.eager
    )
    query = f"?token={args.token}" if args.token else ""
    _say(f"aurl studio: http://{'127.0.0.1' if args.host == '0.0.0.0' else args.host}:{args.port}/{query}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


COMMANDS = {
    "prepare": _prepare,
    "train": _train,
    "generate": _generate,
    "evaluate": _evaluate,
    "render": _render,
    "corpora": _corpora,
    "serve": _serve,
}


# The option that puts a command's files elsewhere, for a failed write's advice (--out by default).
ELSEWHERE = {"train": "--run-dir", "serve": "--work-dir", "corpora": "AURL_CACHE"}
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _write_advice(command: str, code: int | None) -> str:
    elsewhere = f"choose another {ELSEWHERE.get(command, '--out')}"
    if code not in NO_SPACE:
        return elsewhere
    return f"free space, lower train.keep_last or {elsewhere}" if command == "train" else f"free space or {elsewhere}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except WriteError as err:
        print(f"aurl {args.command}: error: {err}; {_write_advice(args.command, err.errno)}", file=sys.stderr)
        return 2
    except AurlError as err:
        print(f"aurl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a failed write in a library call that no `writing` block names: still one line
        if err.errno not in (*NO_SPACE, errno.EROFS):
            raise
        where = f"writing {err.filename}: " if err.filename else ""
        advice = _write_advice(args.command, err.errno)
        print(f"aurl {args.command}: error: {where}{err.strerror}; {advice}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aurl {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
