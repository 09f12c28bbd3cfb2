"""Errors users can act on: each names the file / key / id at fault and what to do."""
from typing import Any, Dict, Optional


class InstSegError(Exception):
    """Base of every error InstSeg raises on purpose; exit code 1 unless a subclass says otherwise.

    `report`, when set, holds extra fields for the failure's `{mode}_result.json` (see docs/ENGINE.md).
    """

    exit_code = 1
    report: Optional[Dict[str, Any]] = None


class ConfigError(InstSegError):
    """A config file or `-o` override is wrong (unknown key, bad type, bad value)."""

    exit_code = 2


class DatasetError(InstSegError):
    """The dataset cannot be read or converted (missing file, malformed JSON, bad layout)."""


class DatasetCheckFailed(DatasetError):
    """check_dataset found errors; `report` is the whole check_dataset result, with `check_pass: false`."""

    def __init__(self, message: str, report: Dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class WeightsError(InstSegError):
    """A weights file is missing, unreadable or does not fit the model."""


class ModeNotAvailableError(InstSegError):
    """A mode or feature that is not built yet for this model."""
