"""The `aurl` command's arguments: one subcommand each for prepare, train, generate, evaluate, render, corpora
and serve, with their help text and defaults (aurl.cli runs them; tests/test_guide.py checks that the guide
names every option)."""

from __future__ import annotations

import argparse


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
    p.add_argument("--min-bars", type=int, help="no end token before the piece's bar N (a piece of N bars or more)")
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
