"""Revision a bar at a time: pseudo-Gibbs sampling, as DeepBach and Coconet revise a chorale.

After a request's first pass, each of settings.sweeps sweeps rewrites every span of one or two bars of every
written voice once, in random order, each with everything else given on both sides: the bars before it, the
block of the bars after it and the other voices at their onsets, as an infill request reads them. A first pass
writes each voice knowing only what came before it; a sweep lets it answer what the others wrote after. The
temperature is annealed over the sweeps, from the request's down to FINAL times it, so that the early sweeps
explore and the last ones settle. Where a sweep rewrites is drawn by the request's seed: one seed, one take.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from aurl.generation.session import Session
from aurl.generation.takes import Take

FINAL = 0.5  # the last sweep's share of the request's temperature
# (take, track, bars 1-based inclusive, temperature) → the take with those bars of that track written anew
Rewrite = Callable[[Take, int, tuple[int, int], float], Take]


def temperatures(first: float, sweeps: int) -> list[float]:
    """Each sweep's temperature: from `first` down to FINAL x first, geometrically."""
    if sweeps == 1:
        return [first]
    return [first * FINAL ** (k / (sweeps - 1)) for k in range(sweeps)]


def spans(bars: tuple[int, int], generator: torch.Generator) -> list[tuple[int, int]]:
    """Bars first-last cut into consecutive spans of one or two bars, each length drawn at random."""
    out, first = [], bars[0]
    while first <= bars[1]:
        last = min(bars[1], first + int(torch.randint(2, (), generator=generator)))
        out.append((first, last))
        first = last + 1
    return out


def revise(
    session: Session, takes: list[Take], voices: list[int], bars: tuple[int, int], rewrite: Rewrite
) -> list[Take]:
    """Each take after settings.sweeps sweeps over `voices` (track numbers) in `bars` (a Session's settings,
    generator and log); with settings.keep_sweeps each keeps the versions before its last sweep."""
    settings, generator = session.settings, session.generator
    out = []
    for i, take in enumerate(takes):
        versions = []
        for k, temperature in enumerate(temperatures(settings.temperature, settings.sweeps), 1):
            began = time.perf_counter()
            order = [(voice, span) for voice in voices for span in spans(bars, generator)]
            versions.append(take)
            for j in torch.randperm(len(order), generator=generator).tolist():
                take = rewrite(take, *order[j], temperature)
            if session.log is not None:
                session.log(
                    f"take {i + 1}/{len(takes)}, sweep {k}/{settings.sweeps} at temperature {temperature:.2f}: "
                    f"{len(order)} spans rewritten in {time.perf_counter() - began:.1f} s"
                )
        take.versions = versions if settings.keep_sweeps else []
        out.append(take)
    return out
