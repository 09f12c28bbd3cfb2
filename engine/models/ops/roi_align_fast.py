"""RoIAlign through a compiled CPU operator (roi_align_cpu.cc) with paddle.vision.ops.roi_align's results.

Paddle's CPU roi_align kernels are single-threaded and their backward is slow; the custom operator
computes the same thing (forward and gradient, to float rounding) several times faster, on as many
threads as paddle's set_num_threads allows (tools/benchmark_roi_align.py measures it).
`roi_align` uses it in eager mode for float32 CPU tensors, and in graphs traced for Paddle Inference with
compiled operators (graph_target.compiled_ops_graph); otherwise it calls paddle.vision.ops.roi_align, so
portable traced / exported graphs keep Paddle's own op and Paddle Inference needs no extra library.
Building, caching and loading: engine/models/ops/compiled_ops.py. `INSTSEG_NATIVE_ROI_ALIGN=0` (or
`INSTSEG_NATIVE_OPS=0`) turns the operator off.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import paddle
import paddle.vision.ops as vops

from .compiled_ops import CompiledOp

SOURCE = Path(__file__).with_name("roi_align_cpu.cc")
OP_NAME = "instseg_roi_align"
SWITCH = "INSTSEG_NATIVE_ROI_ALIGN"
OP = CompiledOp(OP_NAME, SOURCE, SWITCH, fallback="paddle.vision.ops.roi_align")


def native_op() -> Optional[Callable[..., paddle.Tensor]]:
    """The compiled operator, building it on the first call; None if that failed (warned once)."""
    return OP.load()


def uses_native(x: paddle.Tensor, boxes: paddle.Tensor, boxes_num: Optional[paddle.Tensor]) -> bool:
    """Whether `roi_align` would run the compiled operator for these inputs (building it if needed)."""
    return boxes_num is not None and OP.usable(x, boxes)


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
    return OP(x, boxes, boxes_num, int(pooled_h), int(pooled_w), float(spatial_scale), int(sampling_ratio),
              bool(aligned))
