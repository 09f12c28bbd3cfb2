"""Box geometry: IoU, clipping and the (dx, dy, dw, dh) delta coding of R-CNN.

Boxes are float32 `[..., 4]` rows `(x1, y1, x2, y2)` in input-image pixels (no +1 on widths,
as PaddleDetection).
"""
import math
from typing import Sequence

import paddle

# Largest dw/dh a decoded box may use: keeps exp() finite (Detectron's log(1000 / 16)).
_MAX_LOG_SCALE = math.log(1000.0 / 16)


def box_area(boxes: paddle.Tensor) -> paddle.Tensor:
    """Areas of `[..., 4]` boxes, `[...]`."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: paddle.Tensor, boxes2: paddle.Tensor) -> paddle.Tensor:
    """Pairwise IoU, optionally batched.

    Args:
        boxes1: float32 [..., M, 4]; boxes2: float32 [..., N, 4] (x1, y1, x2, y2), same leading dims.
    Returns:
        float32 [..., M, N] in [0, 1]; 0 where the intersection is empty.
    """
    lt = paddle.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    rb = paddle.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (rb - lt).clip(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1)[..., :, None] + box_area(boxes2)[..., None, :] - inter
    return paddle.where(inter > 0, inter / union.clip(min=1e-10), paddle.zeros_like(inter))


def encode_boxes(
    src: paddle.Tensor, tgt: paddle.Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)
) -> paddle.Tensor:
    """Regression targets that move `src` boxes onto `tgt` boxes.

    Args:
        src, tgt: float32 [N, 4] (x1, y1, x2, y2); src must have positive width and height.
        weights: (wx, wy, ww, wh) multipliers, e.g. (10, 10, 5, 5) for the R-CNN box head.
    Returns:
        float32 [N, 4] deltas (dx, dy, dw, dh).
    """
    src_w = src[:, 2] - src[:, 0]
    src_h = src[:, 3] - src[:, 1]
    tgt_w = tgt[:, 2] - tgt[:, 0]
    tgt_h = tgt[:, 3] - tgt[:, 1]
    wx, wy, ww, wh = weights
    dx = wx * ((tgt[:, 0] + 0.5 * tgt_w) - (src[:, 0] + 0.5 * src_w)) / src_w
    dy = wy * ((tgt[:, 1] + 0.5 * tgt_h) - (src[:, 1] + 0.5 * src_h)) / src_h
    dw = ww * paddle.log(tgt_w / src_w)
    dh = wh * paddle.log(tgt_h / src_h)
    return paddle.stack([dx, dy, dw, dh], axis=1)


def decode_boxes(
    deltas: paddle.Tensor, boxes: paddle.Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)
) -> paddle.Tensor:
    """Apply deltas to boxes (inverse of `encode_boxes`).

    Args:
        deltas: float32 [N, 4 * K] (K sets of deltas per box, e.g. one per class).
        boxes: float32 [N, 4].
        weights: the weights the deltas were encoded with.
    Returns:
        float32 [N, K, 4] boxes.
    """
    widths = (boxes[:, 2] - boxes[:, 0]).unsqueeze(1)
    heights = (boxes[:, 3] - boxes[:, 1]).unsqueeze(1)
    ctr_x = boxes[:, 0:1] + 0.5 * widths
    ctr_y = boxes[:, 1:2] + 0.5 * heights
    d = deltas.reshape([-1, deltas.shape[1] // 4, 4])
    wx, wy, ww, wh = weights
    pred_ctr_x = d[:, :, 0] / wx * widths + ctr_x
    pred_ctr_y = d[:, :, 1] / wy * heights + ctr_y
    pred_w = paddle.exp((d[:, :, 2] / ww).clip(max=_MAX_LOG_SCALE)) * widths
    pred_h = paddle.exp((d[:, :, 3] / wh).clip(max=_MAX_LOG_SCALE)) * heights
    return paddle.stack(
        [pred_ctr_x - 0.5 * pred_w, pred_ctr_y - 0.5 * pred_h,
         pred_ctr_x + 0.5 * pred_w, pred_ctr_y + 0.5 * pred_h], axis=-1)


def clip_boxes(boxes: paddle.Tensor, height: paddle.Tensor, width: paddle.Tensor) -> paddle.Tensor:
    """Clip `[N, ..., 4]` boxes to `[0, width] x [0, height]`.

    Args:
        boxes: float32 [N, ..., 4].
        height, width: float32 tensors broadcastable to `boxes[..., 0]` (one value per box or scalar).
    """
    zero = paddle.zeros_like(boxes[..., 0])
    x1 = paddle.maximum(paddle.minimum(boxes[..., 0], width), zero)
    y1 = paddle.maximum(paddle.minimum(boxes[..., 1], height), zero)
    x2 = paddle.maximum(paddle.minimum(boxes[..., 2], width), zero)
    y2 = paddle.maximum(paddle.minimum(boxes[..., 3], height), zero)
    return paddle.stack([x1, y1, x2, y2], axis=-1)


def nonempty(boxes: paddle.Tensor) -> paddle.Tensor:
    """bool [...]: boxes with positive width and height."""
    return paddle.logical_and(boxes[..., 2] > boxes[..., 0], boxes[..., 3] > boxes[..., 1])
