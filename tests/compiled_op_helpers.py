"""Shared test helpers for the compiled CPU operators (engine/models/ops/compiled_ops.CompiledOp)."""
import ctypes
from pathlib import Path
from typing import Any, Callable, List

import paddle
import pytest

from engine.models.ops.compiled_ops import CompiledOp


def require_built(op: CompiledOp) -> Callable[..., Any]:
    """The operator's function; a build failure fails the calling test with the compiler's reason."""
    fn = op.load()
    if fn is None:
        pytest.fail(f"{op.name} did not build: {op.state['error']}")
    return fn


def forbid(op: CompiledOp, monkeypatch: Any) -> None:
    """Make any use of the operator an error (to prove the Paddle fallback was taken)."""
    def forbidden(*args: Any) -> None:
        raise AssertionError(f"the compiled operator {op.name} was used")

    monkeypatch.setitem(op.state, "op", forbidden)


def count_calls(op: CompiledOp, monkeypatch: Any) -> List[int]:
    """A list that gets one entry per call of the (built) operator."""
    calls: List[int] = []
    real = op.state["op"]
    monkeypatch.setitem(op.state, "op", lambda *a: calls.append(1) or real(*a))
    return calls


def paddle_threads() -> int:
    """Paddle's CPU thread count (no getter in Paddle: ask the OpenMP runtime it sets)."""
    libs = Path(paddle.__file__).resolve().parent / "libs"
    return ctypes.CDLL(str(libs / "libiomp5.so")).omp_get_max_threads()
