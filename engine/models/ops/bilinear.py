"""Bilinear resampling with per-row sizes, as gathers: F.interpolate(mode="bilinear", align_corners=False,
align_mode=0) arithmetic, but each row of a batch of maps may have its own input and output size (SOLOv2
resizes each mask from its image's resized size to that image's original size in one batched call).

Only gathers and elementwise arithmetic on non-empty tensors, so it runs eagerly, traced, and on Paddle
Inference's oneDNN executor alike.
"""
from typing import Union

import paddle
import paddle.nn.functional as F

Size = Union[int, paddle.Tensor]


def source_positions(out_size: Size, in_size: paddle.Tensor, scale: paddle.Tensor) -> paddle.Tensor:
    """Fractional source index of each output index, per row.

    Args:
        out_size: number of output positions R (int, or int tensor []).
        in_size: float32 [K] valid input length of each row (positions are clamped to [0, in_size - 1]).
        scale: float32 [K] input length / output length of each row (Paddle's resize ratio).
    Returns:
        float32 [K, R].
    """
    index = paddle.arange(0, out_size, dtype="float32").unsqueeze(0) + 0.5
    pos = index * scale.unsqueeze(1) - 0.5
    return paddle.minimum(pos.clip(min=0.0), (in_size - 1.0).unsqueeze(1))


def lerp_along(x: paddle.Tensor, pos: paddle.Tensor, in_size: paddle.Tensor, axis: int) -> paddle.Tensor:
    """Linear interpolation of `x` along `axis` (1 or 2) at positions `pos`.

    Args:
        x: float32 [K, A, B]; pos: float32 [K, R] from `source_positions`; in_size: float32 [K] the valid
            length of each row along `axis` (the upper neighbour index is clamped to in_size - 1).
    Returns:
        float32 [K, R, B] (axis 1) or [K, A, R] (axis 2).
    """
    low = paddle.floor(pos)
    frac = pos - low
    high = paddle.minimum(low + 1.0, (in_size - 1.0).unsqueeze(1))
    size = paddle.shape(x)
    if axis == 1:
        shape, full = [0, -1, 1], [size[0], paddle.shape(pos)[1], size[2]]
    else:
        shape, full = [0, 1, -1], [size[0], size[1], paddle.shape(pos)[1]]
    # indices expanded explicitly: take_along_axis's own broadcasting fails on traced dynamic shapes
    low_i = paddle.expand(low.astype("int64").reshape(shape), full)
    high_i = paddle.expand(high.astype("int64").reshape(shape), full)
    frac = frac.reshape(shape)
    a = paddle.take_along_axis(x, low_i, axis=axis, broadcast=False)
    b = paddle.take_along_axis(x, high_i, axis=axis, broadcast=False)
    return a * (1.0 - frac) + b * frac


def resize_bilinear(x: paddle.Tensor, out_h: Size, out_w: Size) -> paddle.Tensor:
    """[N, C, H, W] -> [N, C, out_h, out_w], F.interpolate(size=[out_h, out_w], mode="bilinear",
    align_corners=False, align_mode=0). Eager code calls interpolate; traced graphs use the gathers above,
    because Paddle Inference's oneDNN executor (Paddle 3.3.1) cannot run interpolate's float-list
    attribute."""
    if paddle.in_dynamic_mode():
        return F.interpolate(x, size=[out_h, out_w], mode="bilinear", align_corners=False, align_mode=0)
    n, c, h, w = paddle.shape(x)[0], paddle.shape(x)[1], paddle.shape(x)[2], paddle.shape(x)[3]
    rows = x.reshape([n * c, h, w])
    count = paddle.shape(rows)[0]
    for axis, size, out in ((1, h, out_h), (2, w, out_w)):
        ones = paddle.ones([count], "float32")
        length = ones * size.astype("float32")
        scale = length / (ones * (out.astype("float32") if isinstance(out, paddle.Tensor) else float(out)))
        rows = lerp_along(rows, source_positions(out, length, scale), length, axis)
    return rows.reshape([n, c, out_h, out_w])
