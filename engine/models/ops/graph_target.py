"""Which runtime a graph being traced is for: Paddle Inference with Paddle's own ops (the default, the
portable graph), Paddle Inference with InstSeg's compiled CPU operators, or ONNX.

paddle2onnx has no ONNX mapping for a few Paddle ops our graphs use (`nms`, `distribute_fpn_proposals`).
While `onnx_graph()` is active, the ops that would emit them trace an equivalent built from ops it can map
(same outputs); eager code and graphs traced for Paddle Inference are unaffected.

While `compiled_ops_graph()` is active, callers of a CompiledOp (engine.models.ops.compiled_ops) put the
custom operator itself into the traced graph when it is built and switched on, instead of Paddle's op; the
block yields the names of the operators the graph took, which whoever loads the graph must load first.
`compiled_op_calls()` yields the operators any graph traced inside it asked for, taken or not: a model
whose portable trace asked for none has no compiled graph worth tracing.
"""
from contextlib import contextmanager
from typing import ContextManager, Iterator, List, Optional

import paddle

_onnx_depth = 0  # nesting depth of onnx_graph()


@contextmanager
def onnx_graph() -> Iterator[None]:
    """Trace for ONNX inside this block (engine.deployment.onnx_export)."""
    global _onnx_depth
    _onnx_depth += 1
    try:
        yield
    finally:
        _onnx_depth -= 1


# not converted by dy2static: its converted copy kept reading the flag's value from the process's first
# trace, so an ONNX trace after a Paddle one came out as the Paddle graph
@paddle.jit.not_to_static
def tracing_for_onnx() -> bool:
    """True while a static graph is being traced inside `onnx_graph()`."""
    return _onnx_depth > 0 and not paddle.in_dynamic_mode()


class _OpNames:
    """Names of compiled operators recorded while a `collect()` block is open (None outside one)."""

    def __init__(self) -> None:
        self.names: Optional[List[str]] = None

    @contextmanager
    def collect(self) -> Iterator[List[str]]:
        outer, self.names = self.names, []
        try:
            yield self.names
        finally:
            self.names = outer

    def add(self, name: str) -> None:
        if self.names is not None and name not in self.names:
            self.names.append(name)


_taken = _OpNames()  # inside compiled_ops_graph(): the operators the traced graph uses
_asked = _OpNames()  # inside compiled_op_calls(): the operators traced graphs reached, taken or not


def compiled_ops_graph() -> ContextManager[List[str]]:
    """Trace for Paddle Inference with the compiled CPU operators inside this block
    (engine.deployment.exporter); yields the list of the operators' names the traced graph uses."""
    return _taken.collect()


@paddle.jit.not_to_static  # read at trace time, never frozen into a converted copy (see tracing_for_onnx)
def tracing_with_compiled_ops() -> bool:
    """True while a static graph is being traced inside `compiled_ops_graph()`."""
    return _taken.names is not None and not paddle.in_dynamic_mode()


@paddle.jit.not_to_static
def take_compiled_op(name: str) -> None:
    """Record that the graph being traced inside `compiled_ops_graph()` uses the operator `name`."""
    _taken.add(name)


def compiled_op_calls() -> ContextManager[List[str]]:
    """Yields the names of the compiled operators that graphs traced inside this block asked for (whether
    they took them or Paddle's op); engine.deployment.exporter traces a compiled graph only when there is
    one."""
    return _asked.collect()


@paddle.jit.not_to_static
def ask_compiled_op(name: str) -> None:
    """Record, inside `compiled_op_calls()`, that a graph being traced reached the operator `name`."""
    _asked.add(name)
