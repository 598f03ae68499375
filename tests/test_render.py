import wave

import numpy as np
import pytest
import symusic

from aurl.cli import main
from aurl.render import RELEASE_SECONDS, SAMPLE_RATE, RenderError, render_wav
from tests.conftest import make_midi


def test_wav_lasts_as_long_as_the_midi_and_is_not_silent(tmp_path):
    midi = tmp_path / "piece.mid"
    make_midi(midi, seed=3, bars=4)
    wav = render_wav(midi, tmp_path / "piece.wav")
    with wave.open(str(wav)) as f:
        assert (f.getnchannels(), f.getframerate(), f.getsampwidth()) == (2, SAMPLE_RATE, 2)
        audio = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float64) / 32767
        seconds = f.getnframes() / SAMPLE_RATE
    expected = symusic.Score(str(midi)).to("second").end() + RELEASE_SECONDS
    assert seconds == pytest.approx(expected, abs=0.01)
    assert np.abs(audio).max() == pytest.approx(0.89, abs=0.01)  # peak-normalised
    assert np.sqrt(np.mean(audio**2)) > 0.01  # music, not silence


def test_render_command_writes_png_and_wav_and_goes_past_a_bad_file(tmp_path, capsys):
    midi = tmp_path / "a.mid"
    make_midi(midi, seed=1, bars=2)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi")
    assert main(["render", str(midi), str(bad), "--out", str(tmp_path / "out")]) == 2
    assert (tmp_path / "out" / "a.png").stat().st_size > 1000
    assert (tmp_path / "out" / "a.wav").stat().st_size > 1000
    err = capsys.readouterr().err
    assert "bad.mid" in err and "1 of 2 files not rendered" in err
    assert main(["render", str(midi), "--png", "--out", str(tmp_path / "png")]) == 0
    assert [p.name for p in (tmp_path / "png").iterdir()] == ["a.png"]


def test_a_missing_soundfont_is_a_one_line_error(tmp_path):
    midi = tmp_path / "a.mid"
    make_midi(midi, seed=1, bars=2)
    with pytest.raises(RenderError, match="missing.sf2: SoundFont not found"):
        render_wav(midi, tmp_path / "a.wav", tmp_path / "missing.sf2")
