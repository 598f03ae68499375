"""User-facing errors. The CLI prints each as one line and exits with code 2."""

from pathlib import Path


class AurlError(Exception):
    """A problem the user can fix: the message names the file or field and what to do."""


class ConfigError(AurlError):
    """An unknown key or an invalid value in a config file or a --set override."""


class DataError(AurlError):
    """A missing, empty or unusable dataset, corpus or MIDI file."""


class CheckpointError(AurlError):
    """A missing, corrupt or incompatible checkpoint or run directory."""


class WriteError(AurlError):
    """A file that could not be written (a full disk, a read-only one, no permission). The CLI adds what to
    do, since that names its own options (--out, --run-dir)."""

    def __init__(self, path: Path, err: OSError):
        self.path, self.errno = path, err.errno
        super().__init__(f"writing {path}: {err.strerror or err}")


class BusyError(AurlError):
    """A folder another aurl process is writing to."""
