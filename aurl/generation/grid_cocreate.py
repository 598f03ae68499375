"""Accompaniment on the voice grid (aurl.data.grid): a song's kept tracks become given voices of the grid, forced
in their slots at every change (aurl.generation.grid_grammar), and the model writes the other voices frame by
frame, each frame reading the given voices at that onset before its own.

A grid run writes its `tokenizer.voice_programs` voices, highest first. The kept tracks take the voices whose
programs they have where they all have one (a chorale's own parts), else the top voices in the order of their
mean pitch (a melody: the soprano); the added programs are the other voices, top down. The result is the song
with its kept tracks untouched and the written voices added on the added programs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import symusic

from aurl.data.grid import BarLines, VoiceGrid
from aurl.errors import DataError, RequestError
from aurl.generation.grid_grammar import GridGiven
from aurl.generation.session import CoCreation, Session, check_add, check_keep, describe, song_score, whole
from aurl.generation.takes import Take


def slots_of(tokenizer: VoiceGrid, tracks: list[symusic.Track]) -> list[int]:
    """The voice slot each kept track takes (see the module's docstring)."""
    programs = tokenizer.voice_programs
    own = [t.program for t in tracks]
    if all(p in programs for p in own) and len(set(own)) == len(own):
        return [programs.index(p) for p in own]
    order = sorted(range(len(tracks)), key=lambda i: -float(np.mean([n.pitch for n in tracks[i].notes])))
    slots = [0] * len(tracks)
    for slot, i in enumerate(order):
        slots[i] = slot
    return slots


def grid_plan(tokenizer: VoiceGrid, score: symusic.Score, slots: list[int]) -> GridGiven:
    """The given voices of `score` (its tracks on `slots`) as a plan: each bar's meter and its changes."""
    pre = tokenizer.preprocess_score(score)
    if len(pre.tracks) != len(score.tracks):
        raise DataError("song: a kept track has no notes in the run's pitch range; keep another or widen it")
    try:
        events = tokenizer.changes(dict(zip(slots, pre.tracks, strict=True)))
    except ValueError as err:
        raise RequestError("keep", f": {err}") from None
    bars = BarLines(pre, tokenizer.config.max_num_pos_per_beat)
    meters: list[int] = []
    changes: list[dict[int, dict[int, int]]] = []
    vocab = tokenizer.vocab
    for tick in sorted(events):
        for token in bars.up_to(tick)[1::2]:
            if token not in vocab:
                raise RequestError("song", f": its meter {token.split('_')[1]} is not one this run writes")
            meters.append(vocab[token])
            changes.append({})
        changes[-1][bars.position(tick)] = {v: vocab[t] for v, t in enumerate(events[tick]) if t is not None}
    return GridGiven(meters, changes, sorted(slots))


def accompany_on_grid(session: Session, song: str | Path, add: list[int], keep: list[int] | None) -> CoCreation:
    """Keep tracks of the song as given voices of the grid and write the others on the programs of `add`."""
    tokenizer: VoiceGrid = session.tokenizer
    score = song_score(song, session.voices)
    keep = check_keep(keep, len(score.tracks), song, describe(score))
    check_add(add, range(-1, 128))
    if len(keep) + len(add) != tokenizer.voices:
        raise RequestError(
            "add",
            f": a voice grid run writes {tokenizer.voices} voices; "
            f"with {len(keep)} kept, add {tokenizer.voices - len(keep)}",
        )
    kept = score.copy()
    kept.tracks = [score.tracks[k].copy() for k in keep]
    slots = slots_of(tokenizer, list(kept.tracks))
    given = grid_plan(tokenizer, kept, slots)
    written = [s for s in range(tokenizer.voices) if s not in slots]
    prompt = [tokenizer["BOS_None"]]

    def takes() -> list[Take]:
        out = []
        budget = session.settings.max_tokens * len(add) + given.forced
        for row in session.write([prompt] * session.settings.num, [given], budget):
            result = score.copy()
            result.tracks = [*kept.tracks, *_voices(tokenizer, row, written, add, score)]
            out.append(session.take(result, row, whole(range(len(keep)), result)))
        return out

    return CoCreation(session, takes)


def _voices(tokenizer: VoiceGrid, row: list[int], slots: list[int], programs: list[int], song: symusic.Score):
    """The voices of `slots` in a written grid, as tracks on `programs` at the song's resolution, none sounding
    past its end."""
    decoded = tokenizer.decode(row).resample(song.ticks_per_quarter, min_dur=1)
    found = {t.program: t for t in decoded.tracks}
    end = song.end()
    out = []
    for slot, program in zip(slots, programs, strict=True):
        track = symusic.Track(program=max(program, 0), is_drum=program < 0)
        voice = found.get(tokenizer.voice_programs[slot])
        if voice is not None:
            track.notes.extend(
                symusic.Note(n.time, max(1, min(n.duration, end - n.time)), n.pitch, n.velocity)
                for n in voice.notes
                if n.time < end
            )
        out.append(track)
    return out
