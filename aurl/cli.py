"""The `aurl` command: parse arguments, call the library, print results. Errors print as one line, exit 2."""

from __future__ import annotations

import argparse
import errno
import sys

from aurl.errors import AurlError, WriteError


def _say(message: str) -> None:
    """Progress messages appear at once, even when stdout is a file or a pipe."""
    print(message, flush=True)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config (see configs/); defaults apply to missing keys")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.lr=3e-4 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aurl", description="Learn music from MIDI files and write new music.", allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "prepare",
        help="parse and tokenize MIDI files (and scores: MusicXML, MXL, ABC) into a prepared dataset",
        allow_abbrev=False,
        description="Parse (symusic; scores: music21) and tokenize (MidiTok) MIDI files and scores into DIR. A "
        "re-run only tokenizes new or changed files; unusable files are listed in DIR/rejected.jsonl.",
    )
    p.add_argument(
        "source", help="a folder of MIDI files or scores (searched recursively), a glob, or builtin:NAME (aurl corpora)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="prepared dataset folder to create or update")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="parallel processes (default 2)")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="plain progress lines instead of a bar (as when stderr is not a terminal)",
    )
    _add_config_args(p)

    p = sub.add_parser(
        "train",
        help="train a model on a prepared dataset",
        allow_abbrev=False,
        description="Train the model the config describes; writes config.yaml, tokenizer.json, "
        "metrics.jsonl, tb/ and checkpoints/ in the run directory.",
    )
    _add_config_args(p)
    p.add_argument("--run-dir", metavar="DIR", help="run directory (default runs/<config name>)")
    p.add_argument("--overwrite", action="store_true", help="replace a run directory that already holds a run")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its latest good checkpoint, with its config.yaml "
        "(--set may change it, e.g. train.max_steps)",
    )
    p.add_argument(
        "--init-from",
        metavar="RUN[:CHECKPOINT]",
        help="fine-tune: start from another run's weights (best by default) with a new optimizer and LR "
        "schedule from step 0; the dataset must use that run's tokenizer; the source run is only read",
    )
    p.add_argument(
        "--profile-steps",
        metavar="A:B",
        help="write a torch.profiler trace of steps A..B to RUN/tb/profile (view in TensorBoard)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="plain progress lines instead of a bar (as when stderr is not a terminal)",
    )

    p = sub.add_parser(
        "generate",
        help="write new MIDI (and piano-roll PNGs) from a trained run",
        allow_abbrev=False,
        description="Sample new pieces from a trained run; one .mid and one .png per sample.",
    )
    p.add_argument("--run", required=True, metavar="DIR", help="run directory written by `aurl train`")
    p.add_argument("--checkpoint", default="best", help="best, latest or step_N (default best)")
    p.add_argument("--num", type=int, help="number of samples (default: generate.num of the run's config)")
    p.add_argument("--max-tokens", type=int, help="new tokens per sample; may exceed model.context (the window slides)")
    p.add_argument("--min-tokens", type=int, help="no end token before this many new tokens")
    p.add_argument("--max-bars", type=int, help="stop a piece when it would begin bar N+1")
    p.add_argument("--temperature", type=float, help="sampling temperature (> 0; lower is more conservative)")
    p.add_argument("--top-k", type=int, help="keep only the k most likely tokens (0 = all)")
    p.add_argument("--top-p", type=float, help="keep the smallest set of tokens whose probability reaches p")
    p.add_argument("--min-p", type=float, help="drop tokens below min-p x the most likely token's probability")
    p.add_argument("--repetition-penalty", type=float, help="penalise tokens of the last --repetition-window (> 1)")
    p.add_argument("--repetition-window", type=int, help="tokens the repetition penalty looks back over (64)")
    p.add_argument(
        "--unconstrained",
        dest="constrained",
        action="store_const",
        const=False,
        help="sample any token, not only those the tokenizer's grammar allows next",
    )
    p.add_argument("--batch-size", type=int, help="samples generated together (default 8)")
    p.add_argument("--primer", metavar="FILE", help="continue the first --primer-bars bars of this MIDI file or score")
    p.add_argument("--primer-bars", type=int, help="bars of --primer to continue (default 4)")
    p.add_argument(
        "--meter",
        metavar="hold|free|N/D",
        help="time signature of every bar: hold (default) keeps the first bar's (a primer's, a song's), "
        "free lets the model change it, N/D (e.g. 3/4) holds that one",
    )
    p.add_argument("--seed", type=int, help="random seed; equal seeds give equal samples")
    p.add_argument("--out", metavar="DIR", help="output folder (default RUN/samples/TASK: generate, continue, ...)")
    p.add_argument("--wav", action="store_true", help="also render each sample to WAV (see `aurl render`)")
    p.add_argument("--soundfont", metavar="FILE", help="General MIDI SoundFont for --wav (default TimGM6mb)")
    p.add_argument(
        "--compiled",
        action="store_true",
        help="compile the decoding step (CPU, float32, full attention): ~3x faster per token after a "
        "few seconds of compiling (up to ~30 the first time); worth it for long or many pieces",
    )
    co = p.add_argument_group("co-creation (runs of REMI with use_programs, or MMM)")
    co.add_argument("--accompany", metavar="SONG", help="keep tracks of SONG note for note and write new ones (--add)")
    co.add_argument("--keep", metavar="I,J", help="tracks of SONG to keep, 0-based (default: all)")
    co.add_argument("--add", nargs="+", metavar="PROGRAM", help="new tracks, by General MIDI program 0-127 or 'drums'")
    co.add_argument("--infill", metavar="SONG", help="rewrite --bars of SONG, keeping everything else note for note")
    co.add_argument(
        "--sweeps",
        type=int,
        metavar="N",
        help="revision sweeps after the first pass: each rewrites every span of one or two bars of every written "
        "track with everything else in view on both sides, cooler each sweep (default: the run's generate.sweeps)",
    )
    co.add_argument(
        "--keep-sweeps",
        action="store_const",
        const=True,
        help="also write each take as it was before each sweep (sample_I_sweep_K; K 0: the first pass)",
    )
    co.add_argument("--bars", metavar="A-B", help="bars to rewrite, 1-based and inclusive, e.g. 9-12")
    co.add_argument("--track", type=int, metavar="N", help="track to rewrite, 0-based (default: every track)")
    co.add_argument(
        "--control",
        nargs="+",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="attribute controls for a track or bars, e.g. --control track=1 density=6, "
        "--control bars=5-8 polyphony=2-4 (keys: track, bars, density, polyphony, pitch_class, duration, repetition)",
    )
    latent = p.add_argument_group("latent models (model.mode vae)")
    what = latent.add_mutually_exclusive_group()
    what.add_argument("--mode", choices=["sample"], default="sample", help="sample: z from the prior (default)")
    what.add_argument("--encode", metavar="FILE", help="reconstruct the first segment of FILE (--num times)")
    what.add_argument(
        "--interpolate",
        nargs=2,
        metavar=("A", "B"),
        help="write --steps files along the spherical path from A's encoding to B's",
    )
    latent.add_argument("--steps", type=int, help="files written by --interpolate (default 8)")
    latent.add_argument("--z-temperature", type=float, help="scale of z drawn from the prior (default 1)")

    p = sub.add_parser(
        "evaluate",
        help="measure generated music against reference music, and a model's likelihood",
        allow_abbrev=False,
        description="Musical features of each piece, their distributions in GENERATED and --reference "
        "(overlap and KL of Yang & Lerch 2020), a memorisation check against --train, and with --run "
        "and --data the model's loss, perplexity and bits per note. Writes report.json, report.md and "
        "plots to --out.",
    )
    p.add_argument("generated", nargs="?", help="folder, glob or builtin:NAME[:SPLIT] of generated MIDI")
    p.add_argument("--reference", metavar="SOURCE", help="folder, glob or builtin:NAME[:SPLIT] to compare with")
    p.add_argument("--train", metavar="SOURCE", help="training music for the memorisation check (default --reference)")
    p.add_argument("--out", default="evaluation", metavar="DIR", help="report folder (default ./evaluation)")
    p.add_argument("--run", metavar="DIR", help="a run whose likelihood (a VAE: its bound) to measure on --data")
    p.add_argument("--data", metavar="PREPARED", help="prepared dataset for --run")
    p.add_argument("--split", default="valid", choices=["train", "valid", "test"], help="split of --data (valid)")
    p.add_argument("--copy-threshold", type=int, help="flag pieces sharing this many notes in one run (32)")

    p = sub.add_parser(
        "render",
        help="draw MIDI files as piano rolls (PNG), play them into WAV files, write them as scores (MusicXML)",
        allow_abbrev=False,
        description="Render MIDI files (or scores): a piano-roll PNG (tracks in colours, bar lines) and a WAV "
        "through a General MIDI SoundFont, peak-normalised; with --musicxml a score for notation programs, with "
        "--score that score engraved as SVG. Without --png, --wav, --musicxml or --score, the PNG and the WAV.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="MIDI files (or scores: .musicxml, .mxl, .abc) to render")
    p.add_argument("--png", action="store_true", help="write FILE.png")
    p.add_argument("--wav", action="store_true", help="write FILE.wav")
    p.add_argument(
        "--musicxml",
        action="store_true",
        help="write FILE.musicxml: quantised, a part per track named by its instrument, the key music21 finds",
    )
    p.add_argument("--score", action="store_true", help="write FILE.svg: that score engraved (Verovio)")
    p.add_argument("--soundfont", metavar="FILE", help="SoundFont (.sf2) for --wav (default TimGM6mb)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: beside each file)")

    sub.add_parser(
        "corpora",
        help="list the built-in corpora (builtin:NAME) with their pieces, parts and cache",
        allow_abbrev=False,
        description="The music music21 ships, usable as builtin:NAME wherever a MIDI source is asked for; "
        "each converts to MIDI once, on first use, under AURL_CACHE.",
    )

    p = sub.add_parser(
        "serve",
        help="the studio: an HTTP API and a page to generate, hear, see and co-create with trained runs",
        allow_abbrev=False,
        description="Serve trained runs at http://HOST:PORT/ (the page) and /api (JSON; docs at /docs).",
    )
    p.add_argument("--run", action="append", required=True, metavar="DIR", help="run directory to serve (repeatable)")
    p.add_argument("--checkpoint", default="best", help="best, latest or step_N (default best)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", metavar="SECRET", help="every API call must carry it (the printed link does)")
    p.add_argument("--max-batch", type=int, default=32, metavar="ROWS", help="takes decoded together (default 32)")
    p.add_argument("--max-upload-mb", type=float, default=4.0, metavar="MB", help="largest upload (default 4)")
    p.add_argument("--work-dir", metavar="DIR", help="where songs and takes are kept (default: a temporary folder)")
    p.add_argument("--eager", action="store_true", help="decode without compiling (see generate --compiled)")
    return parser


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
