"""Which runtime a graph being traced is for: Paddle Inference (the default) or ONNX.

paddle2onnx has no ONNX mapping for a few Paddle ops our graphs use (`nms`, `distribute_fpn_proposals`).
While `onnx_graph()` is active, the ops that would emit them trace an equivalent built from ops it can map
(same outputs); eager code and graphs traced for Paddle Inference are unaffected.
"""
from contextlib import contextmanager
from typing import Iterator

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
