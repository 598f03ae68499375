"""`aurl evaluate` as a function: features of a generated and a reference set, their comparison, the
memorisation check, optionally the model's likelihood; written as report.json, report.md and PNG plots."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from aurl.config import DataConfig  # noqa: E402
from aurl.data.corpus import BUILTIN_PREFIX, SourceFile, read_score, resolve_source, split_of  # noqa: E402
from aurl.errors import AurlError, DataError  # noqa: E402
from aurl.evaluation.compare import compare_sets  # noqa: E402
from aurl.evaluation.features import HISTOGRAM_FEATURES, SCALAR_FEATURES, Notes, piece_features  # noqa: E402
from aurl.evaluation.harmony import FAULTS, voice_leading_faults  # noqa: E402
from aurl.evaluation.memorisation import NGRAM, TrainingIndex, note_sequence  # noqa: E402

# Notes in one run shared with a training piece that flag a piece as copying. benchmarks/memorisation.py:
# held-out Bach chorales share at most 19 (90th percentile; 23 or fewer but for one melody Bach set twice)
# with the training chorales by chance, while the first half of every training chorale fed back shares 32+.
COPY_THRESHOLD = 32


def source_files(source: str, log: Callable[[str], None] = print) -> list[SourceFile]:
    """The MIDI and score files of a folder, glob, file or `builtin:NAME[:train|valid|test]` (the split by the
    same hash as `aurl prepare`, with the default fractions); a tune each of an ABC file of several."""
    split = None
    if source.startswith(BUILTIN_PREFIX) and source.count(":") == 2:
        source, split = source.rsplit(":", 1)
        if split not in ("train", "valid", "test"):
            raise DataError(f"{source}:{split}: unknown split; use train, valid or test")
    files = resolve_source(source, log=log)
    if split is not None:
        d = DataConfig()
        files = [f for f in files if split_of(f.name, d.valid_fraction, d.test_fraction) == split]
    return files


def midi_files(source: str, log: Callable[[str], None] = print) -> list[Path]:
    """The paths of source_files, one a piece where each file holds one (a built-in corpus, generated takes)."""
    return [f.path for f in source_files(source, log)]


def load_set(source: str, log: Callable[[str], None]) -> tuple[list[dict], list[np.ndarray], list[str]]:
    """(features of each readable piece, its note sequence, the files that failed and why)."""
    features, sequences, failed = [], [], []
    for f in source_files(source, log):
        try:
            score = read_score(f.path, f.number)
        except AurlError as err:  # keep going past a bad file; it is reported
            failed.append(str(err))
            continue
        row = piece_features(score)
        if sum(not track.is_drum for track in score.tracks) == 4:  # four-part writing: its voice leading
            row["voice_leading"] = voice_leading_faults(score)
        row["file"] = str(f.path) if f.number is None else f"{f.path} (tune {f.number})"
        row["id"] = hashlib.sha256(f.path.read_bytes() + str(f.number).encode()).hexdigest()
        features.append(row)
        sequences.append(note_sequence(Notes.of(score)))
    if not features:
        raise DataError(f"{source}: no readable MIDI or score file to evaluate")
    return features, sequences, failed


def _voice_leading(rows: list[dict]) -> dict[str, float]:
    """Faults per 100 notes of each kind and of all, pooled over the four-part pieces."""
    found = [row["voice_leading"] for row in rows if "voice_leading" in row]
    notes = max(1, sum(faults["notes"] for faults in found))
    per_100 = {name: 100 * sum(faults[name] for faults in found) / notes for name in (*FAULTS, "total")}
    return {"pieces": len(found), **per_100}


def _meter_changes(rows: list[dict]) -> dict[str, float]:
    changes = [row["meter_changes"] for row in rows]
    return {"mean": float(np.mean(changes)), "pieces_changing": sum(c > 0 for c in changes)}


def _plots(generated: list[dict], reference: list[dict], out: Path) -> list[Path]:
    """Histograms of every scalar feature in both sets, and the two sets' mean pitch-class histograms."""
    cols = 4
    rows = math.ceil(len(SCALAR_FEATURES) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows))
    for ax, name in zip(axes.flat, SCALAR_FEATURES, strict=False):
        for label, rows_ in (("generated", generated), ("reference", reference)):
            values = [r[name] for r in rows_ if not math.isnan(r[name])]
            if values:
                ax.hist(values, bins=15, alpha=0.55, density=True, label=label)
        ax.set_title(name, fontsize="small")
    for ax in list(axes.flat)[len(SCALAR_FEATURES) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="small")
    fig.tight_layout()
    features_png = out / "features.png"
    fig.savefig(features_png, dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    for offset, (label, rows_) in zip((-0.2, 0.2), (("generated", generated), ("reference", reference)), strict=True):
        mean = np.mean([r["pitch_class_histogram"] for r in rows_], axis=0)
        ax.bar(np.arange(12) + offset, mean, width=0.4, label=label)
    ax.set_xticks(range(12), names)
    ax.set_ylabel("share of notes")
    ax.legend()
    fig.tight_layout()
    classes_png = out / "pitch_classes.png"
    fig.savefig(classes_png, dpi=80)
    plt.close(fig)
    return [features_png, classes_png]


def _markdown(report: dict[str, Any]) -> str:
    lines = ["# aurl evaluation\n"]
    if "comparison" in report:
        lines.append(f"generated: `{report['generated']}` ({report['generated_pieces']} pieces)  ")
        lines.append(f"reference: `{report['reference']}` ({report['reference_pieces']} pieces)\n")
        lines.append("| feature | generated mean ± std | reference mean ± std | overlap | KL |")
        lines.append("|---|---|---|---|---|")
        for name, row in report["comparison"].items():
            if name in SCALAR_FEATURES:
                g = f"{row['generated_mean']:.3f} ± {row['generated_std']:.3f}"
                r = f"{row['reference_mean']:.3f} ± {row['reference_std']:.3f}"
            else:
                g = r = "(histogram)"
            lines.append(f"| {name} | {g} | {r} | {row['overlap']:.3f} | {row['kl']:.3f} |")
        g, r = report["meter_changes"]["generated"], report["meter_changes"]["reference"]
        lines.append(
            f"\ntime-signature changes per piece: generated {g['mean']:.2f} ({g['pieces_changing']} of "
            f"{report['generated_pieces']} pieces change meter), reference {r['mean']:.2f} ({r['pieces_changing']} of "
            f"{report['reference_pieces']})"
        )
        g, r = report["voice_leading"]["generated"], report["voice_leading"]["reference"]
        if g["pieces"] or r["pieces"]:
            kinds = ", ".join(f"{name.replace('_', ' ')} {g[name]:.1f} / {r[name]:.1f}" for name in FAULTS)
            lines.append(
                f"\nvoice-leading faults per 100 notes, generated / reference ({g['pieces']} / {r['pieces']} "
                f"four-part pieces): {g['total']:.1f} / {r['total']:.1f} ({kinds})"
            )
        m = report["memorisation"]
        lines.append(
            f"\nmemorisation against `{m['train']}`: longest run of notes shared with one training piece, median "
            f"{m['median_longest_run']:.0f}, max {m['max_longest_run']}; {NGRAM}-note n-grams found in training: "
            f"{m['mean_ngram_share']:.1%}; flagged (a run of {m['threshold']} notes or more): {len(m['flagged'])}"
        )
        lines += [f"- {flagged}" for flagged in m["flagged"]]
    if report.get("likelihood"):
        lk = report["likelihood"]
        at_most = "at most " if lk["bound"] else ""
        lines.append(
            f"\n{'likelihood bound (negative ELBO)' if lk['bound'] else 'likelihood'} on the {lk['split']} split "
            f"({lk['pieces']} pieces, {lk['tokens']} tokens, {lk['notes']} notes): {at_most}"
            f"{lk['loss_nats_per_token']:.4f} nats/token, perplexity {at_most}{lk['perplexity']:.3f}, "
            f"{at_most}{lk['bits_per_note']:.3f} bits/note"
        )
        if lk["bound"]:
            lines.append(f"(KL {lk['kl_nats_per_segment']:.2f} nats per segment, {lk['segments']} segments)")
    if report["failed"]:
        lines.append("\nfiles that could not be read:")
        lines += [f"- {f}" for f in report["failed"]]
    return "\n".join(lines) + "\n"


def evaluate(
    generated: str | None = None,
    reference: str | None = None,
    out_dir: str | Path = "evaluation",
    train: str | None = None,
    run: str | Path | None = None,
    data: str | Path | None = None,
    split: str = "valid",
    copy_threshold: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Evaluate a generated set against a reference set (and/or a run's likelihood on prepared data).

    Memorisation is checked against `train` (default: the reference set); a piece sharing copy_threshold
    notes (default COPY_THRESHOLD) in one run with a training piece is flagged. Writes report.json, report.md,
    features.png and pitch_classes.png to out_dir and returns the report.
    """
    if generated is None and run is None:
        raise DataError("nothing to evaluate: pass GENERATED (with --reference) or --run with --data")
    copy_threshold = COPY_THRESHOLD if copy_threshold is None else copy_threshold
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"failed": []}
    if run is not None:
        if data is None:
            raise DataError("--run needs --data PREPARED: the prepared dataset to measure the likelihood on")
        from aurl.evaluation.likelihood import likelihood  # torch and the model only when asked for

        report["likelihood"] = likelihood(run, data, split)
    if generated is not None:
        if reference is None:
            raise DataError("GENERATED needs --reference SOURCE: the music to compare it with")
        gen, gen_seqs, gen_failed = load_set(generated, log)
        ref, ref_seqs, ref_failed = load_set(reference, log)
        report["failed"] = gen_failed + ref_failed
        train_seqs = ref_seqs if train is None else load_set(train, log)[1]
        index = TrainingIndex(train_seqs)
        runs = [index.longest_shared_run(s) for s in gen_seqs]
        shares = [index.ngram_share(s) for s in gen_seqs]
        report.update(
            generated=generated,
            reference=reference,
            generated_pieces=len(gen),
            reference_pieces=len(ref),
            comparison=compare_sets(gen, ref, SCALAR_FEATURES + HISTOGRAM_FEATURES),
            meter_changes={label: _meter_changes(rows) for label, rows in (("generated", gen), ("reference", ref))},
            voice_leading={label: _voice_leading(rows) for label, rows in (("generated", gen), ("reference", ref))},
            memorisation={
                "train": train or reference,
                "threshold": copy_threshold,
                "median_longest_run": float(np.median(runs)),
                "max_longest_run": int(max(runs)),
                "mean_ngram_share": float(np.mean(shares)),
                "flagged": [
                    f"{g['file']}: {n} notes in one run" for g, n in zip(gen, runs, strict=True) if n >= copy_threshold
                ],
            },
            pieces=[
                {**g, "longest_shared_run": n, "ngram_share": s} for g, n, s in zip(gen, runs, shares, strict=True)
            ],
            plots=[str(p) for p in _plots(gen, ref, out)],
        )
    (out / "report.md").write_text(_markdown(report))
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    return report
