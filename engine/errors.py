"""Errors users can act on: each names the file / key / id at fault and what to do."""


class InstSegError(Exception):
    """Base of every error InstSeg raises on purpose; exit code 1 unless a subclass says otherwise."""

    exit_code = 1


class ConfigError(InstSegError):
    """A config file or `-o` override is wrong (unknown key, bad type, bad value)."""

    exit_code = 2


class DatasetError(InstSegError):
    """The dataset cannot be read or converted (missing file, malformed JSON, bad layout)."""


class WeightsError(InstSegError):
    """A weights file is missing, unreadable or does not fit the model."""


class ModeNotAvailableError(InstSegError):
    """A mode or feature that is not built yet for this model."""
