import symusic

from aurl.evaluation.harmony import voice_leading_faults

Q = 480


def _chorale(voices: list[list[int]]) -> symusic.Score:
    """Four voices of quarter notes, one list of pitches per voice (soprano first)."""
    score = symusic.Score(Q)
    for pitches in voices:
        track = symusic.Track()
        for i, pitch in enumerate(pitches):
            track.notes.append(symusic.Note(i * Q, Q, pitch, 80))
        score.tracks.append(track)
    return score


def test_clean_four_part_writing_has_no_faults():
    # C major: I - IV - V - I in close position, contrary motion to the bass
    score = _chorale([[72, 72, 71, 72], [67, 69, 67, 67], [64, 65, 62, 64], [48, 53, 55, 48]])
    assert voice_leading_faults(score)["total"] == 0


def test_each_fault_is_counted():
    faults = voice_leading_faults(
        _chorale(
            [
                [74, 76, 57, 59],  # soprano: last two notes below the alto (crossing twice, below its range twice)
                [67, 69, 65, 67],  # alto a fifth under the soprano, then a fifth again: parallel fifths
                [52, 55, 53, 55],  # tenor: more than an octave under the alto at the first two onsets
                [48, 43, 41, 43],  # bass
            ]
        )
    )
    assert faults["parallel_fifths"] >= 1
    assert faults["crossing"] == 2
    assert faults["range"] == 2
    assert faults["spacing"] == 2
    assert faults["notes"] == 16 and faults["per_100_notes"] == 100 * faults["total"] / 16
