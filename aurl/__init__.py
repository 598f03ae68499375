"""aurl: learn music from MIDI files and write new music."""

__version__ = "0.1.0"
