"""Logging set-up for the `instseg` logger: a stream handler and, optionally, a file handler.

Rank-aware: under data-parallel training only rank 0 logs INFO and writes files; other ranks log
warnings and errors only, so a launch with N devices does not print every line N times.
"""
import logging
import os
import sys
from pathlib import Path
from typing import Optional, TextIO, Union

LOGGER_NAME = "instseg"
FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_OWN = "_instseg_setup"  # marks handlers added here, so a second call replaces them


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time (survives stream swaps by tests and tools)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # the current sys.stderr is always used


def _rank() -> int:
    return int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def setup_logging(level: int = logging.INFO, log_file: Optional[Union[str, Path]] = None,
                  append: bool = False) -> logging.Logger:
    """Configure and return the `instseg` logger (stderr; plus `log_file` on rank 0). Idempotent."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if getattr(h, _OWN, False)]:
        logger.removeHandler(handler)
        handler.close()
    main = _rank() == 0
    # Our handlers are the whole output: some Paddle modules call logging.basicConfig, and records
    # propagated to that root handler would print every line twice.
    logger.propagate = False
    logger.setLevel(level if main else max(level, logging.WARNING))
    formatter = logging.Formatter(FORMAT, DATE_FORMAT)
    handlers: list = [_StderrHandler()]
    if log_file is not None and main:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a" if append else "w", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _OWN, True)
        logger.addHandler(handler)
    return logger
