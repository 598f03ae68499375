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


class RequestError(ConfigError):
    """A generation request's field with a bad value or out of place. `field` is its name in the request
    (aurl.generation.requests: "keep", "settings.temperature"), `detail` what follows the name in the message,
    so that the CLI can name its flag instead and the studio the API's field."""

    def __init__(self, field: str, detail: str):
        self.field, self.detail = field, detail
        super().__init__(f"{field}{detail}")
