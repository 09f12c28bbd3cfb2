"""Bilinear resampling with per-row sizes, as gathers: F.interpolate(mode="bilinear", align_corners=False,
align_mode=0) arithmetic, but each row of a batch of maps may have its own input and output size (SOLOv2
resizes each mask from its image's resized size to that image's original size in one batched call).

Only gathers and elementwise arithmetic on non-empty tensors, so it runs eagerly, traced, and on Paddle
Inference's oneDNN executor alike.
"""
from typing import Union

import paddle

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
    shape = [0, -1, 1] if axis == 1 else [0, 1, -1]
    low_i = low.astype("int64").reshape(shape)
    high_i = high.astype("int64").reshape(shape)
    frac = frac.reshape(shape)
    a = paddle.take_along_axis(x, low_i, axis=axis, broadcast=True)
    b = paddle.take_along_axis(x, high_i, axis=axis, broadcast=True)
    return a * (1.0 - frac) + b * frac
