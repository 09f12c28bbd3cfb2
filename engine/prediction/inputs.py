"""Prediction inputs, for the dynamic and the exported predictor alike: numpy BGR images, image files,
directories (recursive, sorted), http(s) URLs, or lists of these.

``iter_inputs`` resolves them lazily to ``(path or URL or None, BGR uint8 ndarray)`` pairs; a bad item raises
``DatasetError`` naming it (the only error type of this module). Files are read with ``cv2.imread``, as the
dataset loader reads them (same decoder, same EXIF orientation). A URL is downloaded, with a time limit and a
size cap, into a private temporary folder (one per ``iter_inputs`` call, each download its own file, so two
URLs with the same file name never meet), read, and deleted; the folder goes when the iteration ends.
"""
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from engine.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
URL_TIMEOUT_S = 20.0  # a whole download, not only one socket read
URL_MAX_BYTES = 50 * 1024 * 1024
_CHUNK = 1 << 16


def is_url(text: str) -> bool:
    return text.startswith("http://") or text.startswith("https://")


def read_image(path: Path, name: Optional[str] = None) -> np.ndarray:
    """BGR uint8 [H, W, 3] of an image file; DatasetError naming `name` (default the path) otherwise."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        shown = name or str(path)
        if not path.is_file():
            raise DatasetError(f"cannot read input {shown!r}: the file is gone or not a file")
        raise DatasetError(f"input {shown!r} is not a readable image ({', '.join(IMAGE_SUFFIXES)})")
    return image


def download(url: str, target: Path, timeout: Optional[float] = None,
             max_bytes: Optional[int] = None) -> Path:
    """Stream `url` into `target` within `timeout` seconds in all and at most `max_bytes` bytes
    (defaults URL_TIMEOUT_S, URL_MAX_BYTES); DatasetError for anything else."""
    timeout = URL_TIMEOUT_S if timeout is None else float(timeout)
    max_bytes = URL_MAX_BYTES if max_bytes is None else int(max_bytes)
    limit = f"the limit of {max_bytes} bytes"
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(target, "wb") as out:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise DatasetError(f"input {url!r} is larger than {limit} ({int(declared)} bytes)")
            size = 0
            while True:
                chunk = resp.read1(_CHUNK)  # what has arrived: the time limit is checked between reads
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise DatasetError(f"input {url!r} is larger than {limit}")
                if time.monotonic() > deadline:
                    raise DatasetError(f"input {url!r} took longer than {timeout:g} s to download")
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:  # includes socket timeouts
        raise DatasetError(f"could not download input {url!r} ({exc}); check the address and "
                           "network") from exc
    return target


class _Downloads:
    """A private temporary folder, made on first use; `close()` removes it with what is left inside."""

    def __init__(self) -> None:
        self.folder: Optional[Path] = None
        self.count = 0

    def read(self, url: str) -> np.ndarray:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="instseg_inputs_"))  # mode 0700: private
        self.count += 1
        name = Path(urllib.parse.urlsplit(url).path).name or "image"
        target = self.folder / f"{self.count}_{name}"  # numbered: equal file names never overwrite
        try:
            return read_image(download(url, target), url)
        finally:
            target.unlink(missing_ok=True)

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _expand(item: Any) -> List[Any]:
    """One user item -> a list of leaf items (ndarray, local file Path or URL str), checked up front."""
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
        if is_url(s):
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
    """Yield ``(path or URL or None, BGR image)`` for every image in ``inputs``, reading each only when
    needed."""
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise DatasetError("no input given")
    downloads = _Downloads()
    try:
        for item in items:
            for leaf in _expand(item):
                if isinstance(leaf, np.ndarray):
                    yield None, leaf
                elif isinstance(leaf, Path):
                    yield str(leaf), read_image(leaf)
                else:
                    yield leaf, downloads.read(leaf)
    finally:
        downloads.close()
