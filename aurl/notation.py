"""Reading MIDI as a score: MusicXML through music21, for MuseScore, Dorico or a DAW, and engraved as SVG
by Verovio, for the eye.

music21 reads the MIDI file with its notes quantised to the piece's grid (sixteenths and eighth-note
triplets), splits notes at bar lines into tied ones, keeps the file's meter and tempo, and writes one part per
track named by its instrument (its track name where that names one, else its General MIDI program); aurl puts
the key signature of music21's key analysis at each part's start (MIDI files seldom carry a true one, and
generated ones never do). In a take that holds given material (a melody harmonised, the bars around an
infill), the notes the model wrote are coloured and the given ones stay black.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import symusic

from aurl.data.corpus import read_score
from aurl.errors import AurlError
from aurl.files import write_together
from aurl.render import Span, given_notes

GRID = (4, 3)  # quarter-note divisions music21 quantises to: sixteenths, eighth-note triplets
WRITTEN_COLOUR = "#1565C0"


class NotationError(AurlError):
    pass


def engraved(midi: str | Path, path: str | Path, xml: str | Path | None = None) -> Path:
    """Engrave the MIDI file's score (its MusicXML `xml`, written now when not given) as one SVG page as long
    as the piece needs (Verovio: staves, clefs, key and time signatures, note heads, ties, bar lines)."""
    import verovio

    path = Path(path)
    if xml is None:
        with tempfile.TemporaryDirectory() as scratch:
            return engraved(midi, path, musicxml(midi, Path(scratch) / "score.musicxml"))
    toolkit = verovio.toolkit(False)  # its fonts from the wheel's data folder, wherever the wheel is installed
    toolkit.setResourcePath(str(Path(verovio.__file__).parent / "data"))
    # every system on one page, as tall as they need
    options = {"pageWidth": 2100, "pageHeight": 60000, "adjustPageHeight": True, "scale": 40}
    toolkit.setOptions({**options, "header": "none", "footer": "none"})
    if not toolkit.loadData(Path(xml).read_text()):
        raise NotationError(f"{midi}: Verovio cannot engrave its score; its MIDI, WAV and piano roll still work")
    write_together({path: lambda tmp: tmp.write_text(toolkit.renderToSVG(1))})
    return path


def musicxml(midi: str | Path, path: str | Path, given: list[Span] = ()) -> Path:
    """Write the MIDI file `midi` as MusicXML at `path` (see the module's docstring), the notes outside the
    `given` material coloured where there is some; a file music21 cannot turn into a score is a NotationError
    naming it, and nothing is written."""
    from music21 import converter, key

    midi, path = Path(midi), Path(path)
    # music21 gives every part the meter and tempo of a conductor track (a first track without notes) and
    # otherwise only to the track that holds them, where symusic writes them
    conducted = read_score(midi)  # a missing or broken MIDI file is named as everywhere else
    conducted.tracks.insert(0, symusic.Track(name="conductor"))
    try:
        with warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
            warnings.simplefilter("ignore")  # music21 warns about every odd duration it rounds
            copy = Path(scratch) / midi.name
            conducted.dump_midi(str(copy))
            score = converter.parse(str(copy), format="midi", quantizePost=True, quarterLengthDivisors=GRID)
            analysed = score.analyze("key")
            for part in score.parts:
                for old in list(part.recurse().getElementsByClass(key.KeySignature)):
                    old.activeSite.remove(old)
                first = part.getElementsByClass("Measure").first()
                (first if first is not None else part).insert(0, key.KeySignature(analysed.sharps))
            if given:
                _colour_written(score, given, conducted.ticks_per_quarter)
            write_together({path: lambda tmp: score.write("musicxml", fp=str(tmp))})
    except AurlError:
        raise
    except Exception as err:  # music21 raises many types for what it cannot notate
        raise NotationError(
            f"{midi}: music21 cannot write it as a score ({type(err).__name__}: {str(err)[:120]}); "
            "its MIDI, WAV and piano roll still work"
        ) from None
    return path


def _colour_written(score, given: list[Span], tpq: int) -> None:
    """Colour the notes (and chords) of each part that start outside its track's given material; a part is
    its track (music21 makes no part of the conductor track)."""
    for track, part in enumerate(score.parts):
        notes = list(part.flatten().notes)
        starts = np.array([round(float(n.offset) * tpq) for n in notes], dtype=np.int64)
        for note, kept in zip(notes, given_notes(track, starts, given), strict=True):
            if not kept:
                note.style.color = WRITTEN_COLOUR
