"""C++ Paddle custom operators compiled on first use, with Paddle's own ops as the fallback.

A `CompiledOp` is one C++ source file defining one custom operator (forward and gradient). It is compiled
with paddle.utils.cpp_extension into `$INSTSEG_CACHE` (default ~/.cache/instseg/ops), in a folder named
after a hash of the source, the flags and the Paddle and Python versions, so a changed source or a new
Paddle gets a fresh build and an unchanged one is loaded directly (Paddle's own `load` would rerun the
whole setup build each time). An exclusive file lock keeps concurrent processes (2-rank training, pytest)
from building into the same folder at once. If the build fails, one warning says why and the caller's
Paddle formulation is used for the rest of the process.

Callers ask `usable` before running the operator. In eager mode it is used wherever it applies. A traced
static graph keeps Paddle's own ops (the portable graph, which Paddle Inference runs without any extra
library), except inside engine.models.ops.graph_target.compiled_ops_graph(), where the custom operator
itself goes into the graph (the exporter's second graph; whoever loads it must first load the operator's
library in the same process: `find_compiled_op(name).load()`). `INSTSEG_NATIVE_OPS=0` turns every compiled
operator off; each operator also has its own switch (`INSTSEG_NATIVE_ROI_ALIGN=0`,
`INSTSEG_NATIVE_MS_DEFORM_ATTN=0`, `INSTSEG_NATIVE_POINT_SAMPLE=0`).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import logging
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

import paddle

from .graph_target import ask_compiled_op, take_compiled_op, tracing_with_compiled_ops

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

ALL_OPS_SWITCH = "INSTSEG_NATIVE_OPS"
CXX_FLAGS = ["-O3", "-fopenmp"]
# operator name -> the module defining its CompiledOp (how a process that loads an exported graph finds the
# operators the graph needs without importing any model code)
DEFINED_IN = {
    "instseg_roi_align": "engine.models.ops.roi_align_fast",
    "instseg_ms_deform_attn": "engine.models.ops.ms_deform_attn",
    "instseg_point_sample": "engine.models.ops.point_sample",
}


def cache_dir() -> Path:
    """Where compiled operators live: $INSTSEG_CACHE, else ~/.cache/instseg/ops."""
    root = os.environ.get("INSTSEG_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "instseg" / "ops"


def link_flags() -> List[str]:
    """Link against the Intel OpenMP runtime bundled with Paddle when there is one: Paddle's CPU kernels
    run on it, so the operators then obey paddle.set_num_threads and share their thread pool (a second
    runtime, GCC's libgomp, would ignore the setting and compete with Intel's spinning workers)."""
    libs = Path(paddle.__file__).resolve().parent / "libs"
    if (libs / "libiomp5.so").is_file():
        return [f"-L{libs}", "-l:libiomp5.so", f"-Wl,-rpath,{libs}"]
    return ["-fopenmp"]


def tracing() -> bool:
    """Whether a static graph is being built (paddle.jit.to_static, AST or bytecode translator). Checked
    before anything the bytecode translator cannot trace (the environment), which would make it fall
    back to eager execution."""
    return not paddle.in_dynamic_mode() or in_sot_simulation_mode()


def _switched_on(name: str) -> bool:
    return os.environ.get(name, "1").strip() != "0"


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


class CompiledOp:
    """The custom operator `name` defined in the C++ file `source`, built and loaded once per process.

    Args:
        name: the operator's name in PD_BUILD_OP (also the library's and the build folder's name).
        source: its C++ file.
        switch: the environment variable that turns this operator off when set to 0.
        fallback: what callers use instead (named in the warning when the build fails).
    """

    def __init__(self, name: str, source: Path, switch: str, fallback: str) -> None:
        self.name, self.source, self.switch, self.fallback = name, source, switch, fallback
        # tried: a build / load was attempted; op: the operator's Python function; error: why it failed
        self.state: dict = {"tried": False, "op": None, "error": None}
        self._guard = threading.Lock()

    def enabled(self) -> bool:
        """False when INSTSEG_NATIVE_OPS=0 or this operator's own switch is 0."""
        return _switched_on(ALL_OPS_SWITCH) and _switched_on(self.switch)

    def build_key(self, ldflags: Sequence[str]) -> str:
        """Hash of everything the compiled library depends on (a change gets a fresh build folder)."""
        digest = hashlib.sha256(self.source.read_bytes())
        for part in (CXX_FLAGS, list(ldflags), paddle.__version__, getattr(paddle.version, "commit", ""),
                     sys.version, sys.platform):
            digest.update(repr(part).encode())
        return digest.hexdigest()[:16]

    def load(self, warn: bool = True) -> Optional[Callable[..., paddle.Tensor]]:
        """The operator's function, building it on the first call; None if that failed (warned once,
        unless the first call says `warn=False`: its caller reports the failure, `state["error"]`)."""
        if not self.state["tried"]:
            with self._guard:
                if not self.state["tried"]:
                    try:
                        self.state["op"] = self.compile()
                        logger.info("Compiled CPU operator %s in use (%s=0 turns it off)", self.name,
                                    self.switch)
                    except Exception as exc:  # any build or load problem: the Paddle formulation instead
                        self.state["error"] = str(exc)
                        report = logger.warning if warn else logger.debug
                        report("Compiled CPU operator %s unavailable, using %s: %s", self.name, self.fallback,
                               exc)
                    self.state["tried"] = True
        return self.state["op"]

    # not converted by dy2static: plain Python at trace time (its converted copy cannot run `load`)
    @paddle.jit.not_to_static
    def usable(self, *tensors: paddle.Tensor) -> bool:
        """Whether to run the operator on these inputs: switched on, every tensor float32 (and a CPU tensor
        in eager mode), the operator built (building it if needed), and either eager mode or a graph traced
        inside compiled_ops_graph() (which then records the operator's name)."""
        if tracing():
            return self._usable_in_graph(tensors)
        if not self.enabled():
            return False
        if any(not t.place.is_cpu_place() or t.dtype != paddle.float32 for t in tensors):
            return False
        return self.load() is not None

    def _usable_in_graph(self, values: Sequence[paddle.Tensor]) -> bool:
        ask_compiled_op(self.name)
        # tracing_with_compiled_ops first: it is False under the bytecode translator, which must not reach
        # the environment lookups of enabled()
        if not tracing_with_compiled_ops() or not self.enabled():
            return False
        if any(v.dtype != paddle.float32 for v in values) or self.load() is None:
            return False
        take_compiled_op(self.name)
        return True

    @paddle.jit.not_to_static
    def __call__(self, *args: object) -> paddle.Tensor:
        """Run the operator (once `usable` said so). In a traced graph every tensor input first goes
        through paddle.assign: Paddle 3.3.1's oneDNN kernels hand a custom operator their output in oneDNN's
        own (blocked) memory layout, which it would read as plain NCHW (wrong results); assign has no oneDNN
        kernel, so Paddle Inference converts the layout for it, and the operator gets plain tensors."""
        if tracing():
            args = tuple(paddle.assign(a) if isinstance(a, (paddle.Tensor, paddle.pir.Value)) else a
                         for a in args)
        return self.state["op"](*args)

    def source_digest(self) -> str:
        """Hash of the C++ source: an exported graph records it, and a graph made with another version of
        the operator is not run with this one."""
        return hashlib.sha256(self.source.read_bytes()).hexdigest()[:16]

    def compile(self) -> Callable[..., paddle.Tensor]:
        """Build (or find already built) and load the operator; returns its Python function."""
        ldflags = link_flags()
        root = cache_dir()
        root.mkdir(parents=True, exist_ok=True)
        build_dir = root / f"{self.name}-{self.build_key(ldflags)}"
        build_dir.mkdir(exist_ok=True)
        log_path = build_dir / "build.log"
        paddle_log = logging.getLogger("utils.cpp_extension")  # paddle's loader logs INFO lines at each load
        level = paddle_log.level
        with _file_lock(build_dir.with_suffix(".lock")):
            paddle_log.setLevel(logging.WARNING)
            try:
                built = self._load_built(build_dir)
                if built is not None:
                    return built
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                        _stderr_to(log_path):
                    warnings.simplefilter("ignore")  # "No ccache found" and ABI notes
                    from paddle.utils.cpp_extension import load

                    module = load(name=self.name, sources=[str(self.source)],
                                  extra_cxx_cflags=list(CXX_FLAGS), extra_ldflags=ldflags,
                                  build_directory=str(build_dir))
            except Exception as exc:
                log = log_path.read_text(errors="replace").strip() if log_path.exists() else ""
                tail = "".join(f"\n{line}" for line in log.splitlines()[-15:])  # the compiler's last words
                raise RuntimeError(f"{exc}{tail}\n(build log: {log_path})") from exc
            finally:
                paddle_log.setLevel(level)
        return getattr(module, self.name)

    def _load_built(self, build_dir: Path) -> Optional[Callable[..., paddle.Tensor]]:
        """The operator from a library an earlier process built into `build_dir` (its folder name hashes
        the source, flags and versions, so a library there is current); None when there is none or it
        fails to load (then it is rebuilt)."""
        library = build_dir / self.name / f"{self.name}.so"
        if not library.is_file():
            return None
        try:
            from paddle.utils.cpp_extension.extension_utils import _import_module_from_library

            return getattr(_import_module_from_library(self.name, str(library.parent)), self.name)
        except Exception as exc:  # a stale or truncated library: build it again
            logger.debug("Rebuilding %s: %s", library, exc)
            return None


def any_compiled_op_enabled(names: Iterable[str]) -> bool:
    """Whether any of the operators `names` is switched on (not by INSTSEG_NATIVE_OPS=0 or its own switch
    turned off); the exporter traces its second graph only then."""
    return any(op.enabled() for op in map(find_compiled_op, names) if op is not None)


def find_compiled_op(name: str) -> Optional[CompiledOp]:
    """The CompiledOp of the operator `name` (see DEFINED_IN), None for an operator this InstSeg lacks."""
    module = DEFINED_IN.get(name)
    if module is None:
        return None
    found = [v for v in vars(importlib.import_module(module)).values()
             if isinstance(v, CompiledOp) and v.name == name]
    return found[0] if found else None
