"""Reading JSON files fast: orjson when it is installed, the standard library otherwise.

COCO-scale annotation files (hundreds of MB) spend most of their load time in the parser; orjson parses
them 2-4x faster than `json`. Both give the same Python objects for standard JSON. Where they differ the
standard library decides, so a file reads the same with or without orjson: orjson rejects a few things
`json` accepts (NaN / Infinity, lone surrogate escapes, a BOM, UTF-16, nesting deeper than 1024), and
when it does the bytes are parsed again by `json`, which then also gives the error message with line and
column for a file that is really broken. One difference stays: orjson reads an integer beyond 64 bits as
a float (no COCO id, size or count is that large, so it is an error either way; only the message
differs). No Paddle import: check_dataset uses this.
"""
import gc
import json
import os
from contextlib import contextmanager
from typing import Any, Iterator, Union

try:
    import orjson
except ImportError:  # optional: requirements.txt lists it, the fallback keeps a minimal install working
    orjson = None  # type: ignore[assignment]


def parse_json(data: Union[bytes, str]) -> Any:
    """The Python value of a JSON document (UTF-8, UTF-16/32 or with a BOM, as `json.loads` accepts).

    Raises:
        json.JSONDecodeError / UnicodeDecodeError (ValueError subclasses): not JSON; RecursionError: too deep.
    """
    with gc_paused():
        if orjson is not None:
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass  # maybe something only the standard library accepts; it also words the error
        return json.loads(data)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: a parse makes millions of containers and no cycles, and each
    collection it triggers walks the whole growing document (halves orjson's time on COCO-scale files).
    Nests: only the outermost pause turns the collector back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_json(path: Union[str, os.PathLike]) -> Any:
    """`parse_json` of a file's bytes; OSError when it cannot be read."""
    with open(path, "rb") as fh:
        return parse_json(fh.read())


def json_backend() -> str:
    """"orjson" or "json": which parser `parse_json` tries first (for benchmarks and logs)."""
    return "orjson" if orjson is not None else "json"
