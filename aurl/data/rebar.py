"""Bar lines drawn again: a training piece's notes under other time signatures, as more training pieces.

A model learns where a bar ends from the bars it trains on. The chorales are in 4/4 and 3/4, so bars of 2/4
and 6/8 are new to a model of them; a 6/8 bar is the worst case, because MidiTok counts it in eighth-note
beats (48 positions, where a 4/4 bar holds 32). Under a melody in 6/8 such a model stacked one voice a
thousand notes deep (docs/benchmarks.md, folk melodies). `data.rebar` maps metres to others, e.g.
{"4/4": ["2/4"], "3/4": ["6/8"]}. Each training piece whose time signatures are all keys is prepared again
once per listed metre: the same notes with other bar lines, named NAME@2-4, always in the training split.
A piece that changes metre takes the k-th metre of each of its signatures' lists.
"""

from __future__ import annotations

import symusic


def parse_metre(text: str) -> tuple[int, int]:
    """(numerator, denominator) of "N/D"; a ValueError where it is not a time signature."""
    numerator, _, denominator = text.partition("/")
    try:
        n, d = int(numerator), int(denominator)
    except ValueError:
        n = d = 0
    if n < 1 or d < 1 or d & (d - 1):
        raise ValueError(f"{text!r} is not a time signature: write N/D with D a power of two, e.g. 6/8")
    return n, d


def suffix(metres: list[str]) -> str:
    """What a copy's name adds to its piece's under `metres` (its signatures' new metres, in order): @2-4+6-8."""
    return "@" + "+".join(dict.fromkeys(m.replace("/", "-") for m in metres))


def rebarred(score: symusic.Score, rebar: dict[str, list[str]]) -> dict[str, symusic.Score]:
    """The copies of `score` under the metres `rebar` maps its time signatures to, by their names' suffix
    (suffix); none where the score has no time signature or one that is not a key."""
    signatures = [(ts.time, f"{ts.numerator}/{ts.denominator}") for ts in score.time_signatures]
    if not signatures or any(metre not in rebar for _, metre in signatures):
        return {}
    copies = {}
    for k in range(min(len(rebar[metre]) for _, metre in signatures)):
        targets = [rebar[metre][k] for _, metre in signatures]
        copy = score.copy()
        copy.time_signatures.clear()
        for (time, _), target in zip(signatures, targets, strict=True):
            copy.time_signatures.append(symusic.TimeSignature(time, *parse_metre(target)))
        copies[suffix(targets)] = copy
    return copies
