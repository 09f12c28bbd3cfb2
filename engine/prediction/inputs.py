"""Prediction inputs: numpy BGR images, file paths, directories, http(s) URLs, or lists of these.

``iter_inputs`` resolves them lazily to ``(path_or_None, BGR uint8 ndarray)``; a bad item raises
``DatasetError`` naming it.
"""
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from engine.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
URL_TIMEOUT_S = 20.0
URL_MAX_BYTES = 50 * 1024 * 1024


def _is_url(s: str) -> bool:
    return s.startswith("http://") or s.startswith("https://")


def _decode(data: bytes, name: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"input {name!r} is not a readable image (jpg, jpeg, png or bmp)")
    return img


def read_url(url: str, timeout: float = URL_TIMEOUT_S, max_bytes: int = URL_MAX_BYTES) -> np.ndarray:
    """Download and decode one image URL; offline, slow or oversized downloads raise DatasetError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read(max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DatasetError(f"could not download input {url!r} ({exc}); check the address and "
                           "network") from exc
    if len(data) > max_bytes:
        raise DatasetError(f"input {url!r} is larger than {max_bytes // (1024 * 1024)} MiB")
    return _decode(data, url)


def _read_file(path: Path) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read input {str(path)!r}: {exc.strerror or exc}") from exc
    return _decode(data, str(path))


def _expand(item: Any) -> List[Any]:
    """One user item → a list of leaf items (ndarray, local file Path or URL str), checked up front."""
    if isinstance(item, np.ndarray):
        if item.ndim == 2:
            item = cv2.cvtColor(item, cv2.COLOR_GRAY2BGR)
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise DatasetError(
                f"numpy input must be a uint8 BGR image (H, W, 3); got {item.dtype} {tuple(item.shape)}"
            )
        return [item]
    if isinstance(item, (str, Path)):
        s = str(item)
        if _is_url(s):
            return [s]
        p = Path(s).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DatasetError(f"input directory {s!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            return files
        if not p.exists():
            raise DatasetError(f"input {s!r} does not exist")
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(f"input {s!r} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
        return [p]
    raise DatasetError(
        f"unsupported input of type {type(item).__name__}; give a BGR ndarray, a path, a directory or a URL"
    )


def iter_inputs(inputs: Any) -> Iterator[Tuple[Optional[str], np.ndarray]]:
    """Yield ``(path or None, BGR image)`` for every image in ``inputs``, reading each only when needed."""
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise DatasetError("no input given")
    for item in items:
        for leaf in _expand(item):
            if isinstance(leaf, np.ndarray):
                yield None, leaf
            elif isinstance(leaf, Path):
                yield str(leaf), _read_file(leaf)
            else:
                yield leaf, read_url(leaf)
