"""Full-image masks from prototypes x coefficients (PP-YOLOE_seg / YOLACT-style mask assembly).

PaddleDetection makes each mask as: sigmoid(coefficients @ prototypes) at stride 4, bilinear resize to the
network input, zero outside the box, bilinear resize to round(input / scale_factor), crop to the original
image, threshold. Both resizes and the box crop are separable along rows and columns, so here each mask is
one product R_y @ P @ R_x^T, with R_y [H_out, h] and R_x [W_out, w] composing the two resizes and the crop
for that detection. Same result, without the intermediate input-sized images.
"""
from typing import Tuple

import paddle
import paddle.nn.functional as F


def bilinear_taps(in_size: paddle.Tensor, out_size: paddle.Tensor, positions: paddle.Tensor
                  ) -> Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor, paddle.Tensor]:
    """The two source samples and weights of `F.interpolate(mode="bilinear", align_corners=False)`.

    Args:
        in_size, out_size: float32 sizes along one axis; positions: float32 output pixel indices; all three
            the same shape (explicitly: oneDNN's divide computes wrong values when it has to broadcast).
    Returns:
        (low index, high index, low weight, high weight), float32, shaped like `positions`.
    """
    src = ((positions + 0.5) * (in_size / out_size) - 0.5).clip(min=0.0)
    low = paddle.minimum(paddle.floor(src), in_size - 1.0)  # clamped: positions past the output are unused
    high = paddle.minimum(low + 1.0, in_size - 1.0)
    frac = src - low
    return low, high, 1.0 - frac, frac


def _axis_operator(grid_size: int, net_size: paddle.Tensor, scale: paddle.Tensor, keep: paddle.Tensor,
                   lo: paddle.Tensor, hi: paddle.Tensor, out_size: paddle.Tensor) -> paddle.Tensor:
    """float32 [K, out_size, grid_size]: along one axis, grid (stride 4) -> network input (crop [lo, hi))
    -> output pixels (rows/cols >= keep zeroed).

    net_size: float32 [] input size along the axis; scale: float32 [K] resized / original;
    keep: float32 [K] original size; lo, hi: float32 [K] box edges in input pixels.
    """
    grid = paddle.arange(0, grid_size, dtype="float32")
    net_pos = paddle.arange(0, net_size.astype("int64"), dtype="float32")
    g_lo, g_hi, g_wlo, g_whi = bilinear_taps(paddle.full_like(net_pos, float(grid_size)),
                                             paddle.zeros_like(net_pos) + net_size, net_pos)
    first = (g_wlo.unsqueeze(1) * (grid == g_lo.unsqueeze(1)).astype("float32")
             + g_whi.unsqueeze(1) * (grid == g_hi.unsqueeze(1)).astype("float32"))  # [net, grid]
    k = paddle.shape(lo)[0]
    out_pos = paddle.arange(0, out_size, dtype="float32").unsqueeze(0).tile([k, 1])  # [K, out]
    net_k = paddle.zeros_like(scale) + net_size
    resized = paddle.floor(net_k / scale + 0.5)  # PaddleDetection's round(input / scale_factor)
    width = paddle.shape(out_pos)[1]
    n_lo, n_hi, n_wlo, n_whi = bilinear_taps(net_k.unsqueeze(1).tile([1, width]),
                                             resized.unsqueeze(1).tile([1, width]), out_pos)
    lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
    shown = (out_pos < keep.unsqueeze(1)).astype("float32")

    def inside(index: paddle.Tensor) -> paddle.Tensor:
        return paddle.logical_and(index >= lo, index < hi).astype("float32")

    w_lo = n_wlo * inside(n_lo) * shown
    w_hi = n_whi * inside(n_hi) * shown
    rows_lo = paddle.gather(first, n_lo.astype("int64").flatten()).reshape([k, -1, grid_size])
    rows_hi = paddle.gather(first, n_hi.astype("int64").flatten()).reshape([k, -1, grid_size])
    return w_lo.unsqueeze(-1) * rows_lo + w_hi.unsqueeze(-1) * rows_hi


def assemble_masks(protos: paddle.Tensor, coeffs: paddle.Tensor, image_of: paddle.Tensor,
                   boxes: paddle.Tensor, net_shape: paddle.Tensor, scale_factor: paddle.Tensor,
                   original_size: paddle.Tensor, out_h: paddle.Tensor, out_w: paddle.Tensor,
                   threshold: float = 0.5) -> paddle.Tensor:
    """Binary full-image masks of K detections.

    Args:
        protos: float32 [N, M, h, w] prototypes (stride 4 of the network input).
        coeffs: float32 [K, M] mask coefficients; image_of: int64 [K] image of each detection.
        boxes: float32 [K, 4] x1y1x2y2 in network-input pixels (the crop).
        net_shape: float32 [2] (H, W) of the network input (padded batch size).
        scale_factor: float32 [K, 2] (h, w) resized / original, per detection.
        original_size: float32 [K, 2] original (h, w) per detection.
        out_h, out_w: int sizes of the output (>= every original size).
    Returns:
        uint8 [K, out_h, out_w], 1 where the resampled probability > threshold.
    """
    num, channels, h, w = protos.shape
    # one 2-D product against every image's prototypes, then each detection's own image: [K, N * h * w]
    # (a batched product broadcasting K over N computes wrong values under oneDNN in exported graphs)
    logits = paddle.matmul(coeffs, protos.transpose([1, 0, 2, 3]).reshape([channels, -1]))
    own = paddle.arange(0, paddle.shape(coeffs)[0], dtype="int64") * num + image_of  # row (k, image_of[k])
    probs = F.sigmoid(paddle.gather(logits.reshape([-1, h * w]), own)).reshape([-1, h, w])
    rows = _axis_operator(h, net_shape[0], scale_factor[:, 0], original_size[:, 0], boxes[:, 1], boxes[:, 3],
                          out_h)
    cols = _axis_operator(w, net_shape[1], scale_factor[:, 1], original_size[:, 1], boxes[:, 0], boxes[:, 2],
                          out_w)
    full = paddle.matmul(rows, paddle.matmul(probs, cols, transpose_y=True))
    return (full > threshold).astype("uint8")
