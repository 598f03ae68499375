"""Can a model tell its good harmonisations from its bad ones? Each held-out four-part chorale's soprano is
harmonised `--num` times (alto, tenor and bass written, at the run's accompany settings); each take is counted
for voice-leading faults (aurl.evaluation.harmony: the measure, never a judge) and scored by the run's own model
in several ways, each a candidate judge that ranks the takes of one melody (lower bits per note first):

- likelihood: the written voices given the soprano, as the take was written (the model's own choice);
- free: the whole take read as a free piece;
- each voice: every voice given the other three (a pseudo-likelihood, as Coconet and DeepBach score);
- lower voices: alto, tenor and bass each given the other three;
- melody: the soprano given the three written voices (the take read backwards, as it were);
- with `--amateur RUN` (a weaker run of the same corpus and tokenizer, e.g. the same config stopped after a few
  dozen steps), the contrast of contrastive decoding (Li et al. 2022): the likelihood minus ALPHA x the
  amateur's, so that what is merely easy to predict (voices moving together) stops looking good.

Per judge: the mean faults of the takes it picks (one per melody) against the mean of all takes, and the
correlation between its score and the faults within a melody's takes. Target (issue 32): a pick at most 0.7x
the average take's faults.

    .venv/bin/python benchmarks/judge.py --run runs/demo --num 8 [--amateur RUN] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import symusic
import torch
from cocreate_timed import LOWER, SOPRANO, bits, fitting, held_out_chorales, notes_of  # benchmarks/cocreate_timed.py
from machine import machine  # benchmarks/machine.py

from aurl.data.layout import Bar
from aurl.evaluation.harmony import voice_leading_faults
from aurl.evaluation.likelihood import written_nll
from aurl.generation.generate import Trained
from aurl.generation.requests import Accompany, generate
from aurl.generation.session import Session
from aurl.generation.timed import read_timed_song

VOICES = [SOPRANO, *LOWER]
ALPHAS = (0.5, 1.0)  # weights of the amateur's likelihood in the contrast
JUDGES = {
    "likelihood": ([SOPRANO], LOWER),  # (given, scored): each scored voice read with these given
    "free": ([], VOICES),
    "each voice": (None, VOICES),  # None: every voice given the other three
    "lower voices": (None, LOWER),
    "melody": (None, [SOPRANO]),
}


def nats(session: Session, bars: list[Bar], given: list[int], scored: list[int]) -> tuple[float, int]:
    """Nats and notes of the `scored` voices of a take's bars read with `given` voices given (none: a free
    piece)."""
    layout, model = session.layout, session.decoder
    task, is_given = ("accompany", lambda bar, program: program in given) if given else ("free", None)
    count = fitting(layout, bars, is_given or (lambda bar, program: False), model.cfg.context)
    laid = layout.window(task, bars, range(count), is_given)
    return written_nll(model, session.tokenizer["BOS_None"], laid), notes_of(layout, laid, set(scored))


def scores(session: Session, path: Path) -> dict[str, float]:
    """Each judge's bits per note of one take."""
    bars = read_timed_song(path, session.tokenizer, session.layout).bars
    with torch.no_grad():
        alone = {v: nats(session, bars, [u for u in VOICES if u != v], [v]) for v in VOICES}
        out = {}
        for name, (given, scored) in JUDGES.items():
            parts = [alone[v] for v in scored] if given is None else [nats(session, bars, given, scored)]
            out[name] = bits(sum(p[0] for p in parts), sum(p[1] for p in parts))
    return out


def likelihood(session: Session, path: Path) -> float:
    """Bits per note of a take's written voices given its soprano: what the amateur's contrast needs, alone."""
    bars = read_timed_song(path, session.tokenizer, session.layout).bars
    with torch.no_grad():
        return bits(*nats(session, bars, *JUDGES["likelihood"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run trained with configs/demo.yaml (its chorales)")
    parser.add_argument("--num", type=int, default=8, help="takes per soprano (default 8)")
    parser.add_argument("--chorales", type=int, help="only the first N held-out chorales")
    parser.add_argument("--amateur", help="a weaker run of the same corpus: also judge by the contrast with it")
    parser.add_argument("--out", help="keep the takes here")
    args = parser.parse_args()
    chorales = held_out_chorales(args.chorales)
    trained = Trained.load(args.run)
    session = Session(trained, trained.settings({}))
    amateur = None
    if args.amateur:
        weaker = Trained.load(args.amateur)
        amateur = Session(weaker, weaker.settings({}))
    takes: list[list[dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        for i, path in enumerate(chorales):
            request = Accompany(song=str(path), add=list(LOWER), keep=[0])
            made = generate(trained, out / path.stem, log=None, request=request, num=args.num, seed=i)
            rows = []
            for sample in made:
                found = voice_leading_faults(symusic.Score(str(sample.midi)))
                row = {"faults": 100 * found["total"] / max(1, found["notes"]), **scores(session, sample.midi)}
                if amateur is not None:
                    weak = likelihood(amateur, sample.midi)
                    row.update({f"likelihood - {a:g} x amateur": row["likelihood"] - a * weak for a in ALPHAS})
                rows.append(row)
            takes.append(rows)
    mean = np.mean([np.mean([r["faults"] for r in rows]) for rows in takes])
    best = np.mean([min(r["faults"] for r in rows) for rows in takes])
    print(f"## Judges of takes: {len(takes)} held-out chorale sopranos, {args.num} harmonisations each")
    print(f"{machine()}; run {args.run}\n")
    print("| pick | faults/100 notes | against the mean take | correlation with faults, within a melody |")
    print("|---|---|---|---|")
    print(f"| every take (the mean) | {mean:.2f} | 1.00x | |")
    print(f"| the best by faults (the measure itself) | {best:.2f} | {best / mean:.2f}x | |")
    for name in [name for name in takes[0][0] if name != "faults"]:
        picked = np.mean([min(rows, key=lambda r: r[name])["faults"] for rows in takes])
        corr = np.mean([np.corrcoef([r[name] for r in rows], [r["faults"] for r in rows])[0, 1] for rows in takes])
        print(f"| {name} | {picked:.2f} | {picked / mean:.2f}x | {corr:+.2f} |")
    print("target: a judge's pick at most 0.7x the mean take's faults")


if __name__ == "__main__":
    main()
