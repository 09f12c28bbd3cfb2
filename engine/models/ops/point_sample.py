"""Bilinear sampling of maps at fixed points: `paddle.nn.functional.grid_sample` (bilinear, zero padding,
align_corners=False), computed by a compiled CPU operator (point_sample_cpu.cc, built by compiled_ops.py)
where it applies.

Mask-RT-DETR's matcher and mask losses sample mask logits of every query at thousands of random points;
Paddle's CPU grid_sample is single-threaded and allocates four corner tensors of the output's size, which
made these calls a large part of a training step. The operator gives the same values and the same gradient
with respect to the maps (to float rounding); it has no gradient for the points, so it is used only when the
grid does not need one (random or detached points), in eager mode, for float32 CPU tensors.
`INSTSEG_NATIVE_POINT_SAMPLE=0` (or `INSTSEG_NATIVE_OPS=0`) keeps grid_sample everywhere.
"""
from pathlib import Path

import paddle
import paddle.nn.functional as F

from .compiled_ops import CompiledOp

NATIVE = CompiledOp("instseg_point_sample", Path(__file__).with_name("point_sample_cpu.cc"),
                    switch="INSTSEG_NATIVE_POINT_SAMPLE", fallback="grid_sample")


def grid_sample_points(x: paddle.Tensor, grid: paddle.Tensor) -> paddle.Tensor:
    """F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).

    Args:
        x: float32 [N, C, H, W].
        grid: float32 [N, Ho, Wo, 2] (x, y) in [-1, 1] (-1 = left / top edge of the map).
    Returns:
        float32 [N, C, Ho, Wo]; zero where a point is off the map.
    """
    if grid.stop_gradient and NATIVE.usable(x, grid):
        n, ho, wo = grid.shape[:3]
        out = NATIVE(x, grid.reshape([n, ho * wo, 2]))
        return out.reshape([n, x.shape[1], ho, wo])
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
