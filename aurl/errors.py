"""User-facing errors. The CLI prints each as one line and exits with code 2."""


class AurlError(Exception):
    """A problem the user can fix: the message names the file or field and what to do."""


class ConfigError(AurlError):
    """An unknown key or an invalid value in a config file or a --set override."""


class DataError(AurlError):
    """A missing, empty or unusable dataset, corpus or MIDI file."""


class CheckpointError(AurlError):
    """A missing, corrupt or incompatible checkpoint or run directory."""
