"""Paste per-box mask probabilities (e.g. 28 x 28) into full-image binary masks.

Same result as PaddleDetection's `paste_mask` (bilinear `grid_sample`, align_corners=False, zero
padding, then `>= threshold`), computed as two batched matrix products: bilinear resampling of a
box-aligned grid is separable, so image = Wy @ mask @ Wx^T with Wy [H, h] and Wx [W, w] holding the
interpolation weights of each output row / column.
"""
import paddle


def _axis_weights(lo: paddle.Tensor, hi: paddle.Tensor, size: paddle.Tensor, cells: int) -> paddle.Tensor:
    """float32 [K, size, cells]: bilinear weights of the `cells` mask samples for each output pixel.

    Pixel p (centre p + 0.5) maps to the mask coordinate u = (p + 0.5 - lo) / (hi - lo) * cells - 0.5;
    sample m gets weight max(0, 1 - |u - m|); samples outside the mask contribute nothing (zero padding).
    """
    centres = paddle.arange(0, size, dtype="float32") + 0.5
    u = (centres.unsqueeze(0) - lo.unsqueeze(1)) / (hi - lo).unsqueeze(1) * cells - 0.5
    m = paddle.arange(cells, dtype="float32")
    return paddle.nn.functional.relu(1.0 - (u.unsqueeze(2) - m).abs())


def paste_masks(masks: paddle.Tensor, boxes: paddle.Tensor, height: paddle.Tensor,
                width: paddle.Tensor, threshold: float = 0.5) -> paddle.Tensor:
    """Full-image masks.

    Args:
        masks: float32 [K, h, w] probabilities in [0, 1], each covering its box.
        boxes: float32 [K, 4] (x1, y1, x2, y2) in the output image's pixels.
        height, width: int scalars or int tensors [] of the output.
    Returns:
        uint8 [K, height, width], 1 where the resampled probability >= threshold.
    """
    wy = _axis_weights(boxes[:, 1], boxes[:, 3], height, masks.shape[1])
    wx = _axis_weights(boxes[:, 0], boxes[:, 2], width, masks.shape[2])
    full = paddle.matmul(wy, paddle.matmul(masks, wx, transpose_y=True))
    return (full >= threshold).astype("uint8")
