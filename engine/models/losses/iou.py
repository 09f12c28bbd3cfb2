"""IoU-based box losses. Pairwise IoU itself is `engine.models.ops.box_coder.box_iou` (batched too)."""
import paddle


def giou_loss(pred: paddle.Tensor, target: paddle.Tensor, eps: float = 1e-10) -> paddle.Tensor:
    """1 - GIoU (https://arxiv.org/abs/1902.09630) of matched boxes, no reduction.

    Args:
        pred, target: float32 [..., 4] (x1, y1, x2, y2), same shape.
        eps: added to the union and the enclosing area (PaddleDetection's GIoULoss value).
    Returns:
        float32 [..., 1] in [0, 2].
    """
    px1, py1, px2, py2 = paddle.split(pred, 4, axis=-1)
    tx1, ty1, tx2, ty2 = paddle.split(target, 4, axis=-1)
    inter = ((paddle.minimum(px2, tx2) - paddle.maximum(px1, tx1)).clip(0)
             * (paddle.minimum(py2, ty2) - paddle.maximum(py1, ty1)).clip(0))
    union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter + eps
    iou = inter / union
    enclosing = ((paddle.maximum(px2, tx2) - paddle.minimum(px1, tx1))
                 * (paddle.maximum(py2, ty2) - paddle.minimum(py1, ty1)) + eps)
    return 1.0 - (iou - (enclosing - union) / enclosing)
