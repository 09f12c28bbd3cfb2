"""RoIAlign through a compiled CPU operator (roi_align_cpu.cc) with paddle.vision.ops.roi_align's results.

Paddle's CPU roi_align kernels are single-threaded and their backward is slow; the custom operator
computes the same thing (forward and gradient, to float rounding) several times faster, on as many
threads as paddle's set_num_threads allows (tools/benchmark_roi_align.py measures it).
`roi_align` uses it in eager mode for float32 CPU tensors and otherwise calls paddle.vision.ops.roi_align,
so traced/exported static graphs keep Paddle's own op and Paddle Inference needs no extra library.

The operator is compiled on first use with paddle.utils.cpp_extension into `$INSTSEG_CACHE` (default
~/.cache/instseg/ops), in a folder named after a hash of the source, the flags and the Paddle and Python
versions; an exclusive file lock keeps concurrent processes (2-rank training, pytest) from building
into it at the same time. If the build fails, one warning says why and Paddle's op is used.
`INSTSEG_NATIVE_ROI_ALIGN=0` turns the operator off.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Union

import paddle
import paddle.vision.ops as vops

try:  # True while paddle.jit.to_static's bytecode translator (SOT) traces a function
    from paddle.base.dygraph.base import in_sot_simulation_mode
except ImportError:  # older layout: only the AST translator, which in_dynamic_mode already covers
    def in_sot_simulation_mode() -> bool:
        return False

try:
    import fcntl
except ImportError:  # not POSIX: no lock (concurrent first builds must then be avoided by the caller)
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("instseg")

SOURCE = Path(__file__).with_name("roi_align_cpu.cc")
OP_NAME = "instseg_roi_align"
SWITCH = "INSTSEG_NATIVE_ROI_ALIGN"
CXX_FLAGS = ["-O3", "-fopenmp"]

_guard = threading.Lock()
_state: dict = {"tried": False, "op": None, "error": None}


def cache_dir() -> Path:
    """Where compiled operators live: $INSTSEG_CACHE, else ~/.cache/instseg/ops."""
    root = os.environ.get("INSTSEG_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "instseg" / "ops"


def enabled() -> bool:
    """False when INSTSEG_NATIVE_ROI_ALIGN=0 (Paddle's op everywhere)."""
    return os.environ.get(SWITCH, "1").strip() != "0"


def link_flags() -> List[str]:
    """Link against the Intel OpenMP runtime bundled with Paddle when there is one: Paddle's CPU kernels
    run on it, so the operator then obeys paddle.set_num_threads and shares their thread pool (a second
    runtime, GCC's libgomp, would ignore the setting and compete with Intel's spinning workers)."""
    libs = Path(paddle.__file__).resolve().parent / "libs"
    if (libs / "libiomp5.so").is_file():
        return [f"-L{libs}", "-l:libiomp5.so", f"-Wl,-rpath,{libs}"]
    return ["-fopenmp"]


def build_key(ldflags: Sequence[str]) -> str:
    """Hash of everything the compiled library depends on (a change gets a fresh build folder)."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    for part in (CXX_FLAGS, list(ldflags), paddle.__version__, getattr(paddle.version, "commit", ""),
                 sys.version, sys.platform):
        digest.update(repr(part).encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 (the compiler's messages, from paddle's build subprocess) to `path`."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "wb") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _compile() -> Callable[..., paddle.Tensor]:
    """Build (or find already built) and load the operator; returns its Python function."""
    ldflags = link_flags()
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    build_dir = root / f"{OP_NAME}-{build_key(ldflags)}"
    build_dir.mkdir(exist_ok=True)
    log_path = build_dir / "build.log"
    paddle_log = logging.getLogger("utils.cpp_extension")  # paddle's loader logs INFO lines at each load
    level = paddle_log.level
    with _file_lock(build_dir.with_suffix(".lock")):
        paddle_log.setLevel(logging.WARNING)
        try:
            built = _load_built(build_dir)
            if built is not None:  # Paddle's load() would run the whole setup build again
                return built
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _stderr_to(log_path):
                warnings.simplefilter("ignore")  # "No ccache found" and ABI notes
                from paddle.utils.cpp_extension import load

                module = load(name=OP_NAME, sources=[str(SOURCE)], extra_cxx_cflags=list(CXX_FLAGS),
                              extra_ldflags=ldflags, build_directory=str(build_dir))
        except Exception as exc:
            log = log_path.read_text(errors="replace").strip() if log_path.exists() else ""
            tail = "".join(f"\n{line}" for line in log.splitlines()[-15:])  # the compiler's last words
            raise RuntimeError(f"{exc}{tail}\n(build log: {log_path})") from exc
        finally:
            paddle_log.setLevel(level)
    return getattr(module, OP_NAME)


def _load_built(build_dir: Path) -> Optional[Callable[..., paddle.Tensor]]:
    """The operator from a library an earlier process built into `build_dir` (its folder name hashes the
    source, flags and versions, so a library there is current); None when there is none or it fails to load
    (then it is rebuilt)."""
    library = build_dir / OP_NAME / f"{OP_NAME}.so"
    if not library.is_file():
        return None
    try:
        from paddle.utils.cpp_extension.extension_utils import _import_module_from_library

        return getattr(_import_module_from_library(OP_NAME, str(library.parent)), OP_NAME)
    except Exception as exc:  # a stale or truncated library: build it again
        logger.debug("Rebuilding %s: %s", library, exc)
        return None


def native_op() -> Optional[Callable[..., paddle.Tensor]]:
    """The compiled operator, building it on the first call; None if that failed (warned once)."""
    if not _state["tried"]:
        with _guard:
            if not _state["tried"]:
                try:
                    _state["op"] = _compile()
                except Exception as exc:  # any build or load problem: Paddle's op instead
                    _state["error"] = str(exc)
                    logger.warning("Native CPU roi_align unavailable, using paddle.vision.ops.roi_align: %s",
                                   exc)
                _state["tried"] = True
    return _state["op"]


def uses_native(x: paddle.Tensor, boxes: paddle.Tensor, boxes_num: Optional[paddle.Tensor]) -> bool:
    """Whether `roi_align` would run the compiled operator for these inputs (building it if needed)."""
    # First whether a static graph is being built (checked before the environment, which the
    # bytecode translator cannot trace and would fall back to eager execution for)
    if not paddle.in_dynamic_mode() or in_sot_simulation_mode():
        return False
    if boxes_num is None or not enabled():
        return False
    if not x.place.is_cpu_place() or x.dtype != paddle.float32 or boxes.dtype != paddle.float32:
        return False
    return native_op() is not None


def roi_align(x: paddle.Tensor, boxes: paddle.Tensor, boxes_num: Optional[paddle.Tensor],
              output_size: Union[int, Sequence[int]], spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = True, name: Any = None) -> paddle.Tensor:
    """paddle.vision.ops.roi_align, computed by the compiled operator where it applies (`uses_native`)."""
    if not uses_native(x, boxes, boxes_num):
        return vops.roi_align(x, boxes, boxes_num, output_size, spatial_scale=spatial_scale,
                              sampling_ratio=sampling_ratio, aligned=aligned, name=name)
    if isinstance(output_size, int):
        pooled_h = pooled_w = output_size
    else:
        pooled_h, pooled_w = output_size
    op = _state["op"]
    return op(x, boxes, boxes_num, int(pooled_h), int(pooled_w), float(spatial_scale), int(sampling_ratio),
              bool(aligned))
