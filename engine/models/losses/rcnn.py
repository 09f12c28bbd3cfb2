"""Losses of the R-CNN family, as PaddleDetection computes them (names are the keys it logs)."""
from typing import Dict

import paddle
import paddle.nn.functional as F


def rpn_loss(logits: paddle.Tensor, deltas: paddle.Tensor, labels: paddle.Tensor,
             target_deltas: paddle.Tensor, normalizer: float) -> Dict[str, paddle.Tensor]:
    """Objectness BCE over sampled anchors and L1 over foreground anchors, both summed / normalizer.

    Args:
        logits: float32 [A]; deltas: float32 [A, 4]; all anchors of all images.
        labels: int32 [A]: 1 fg, 0 bg, -1 not sampled; target_deltas: float32 [A, 4].
        normalizer: anchors sampled per image x images (PaddleDetection: batch_size_per_im * N).
    """
    valid = paddle.nonzero(labels >= 0).flatten()
    fg = paddle.nonzero(labels == 1).flatten()
    loss_cls = F.binary_cross_entropy_with_logits(
        paddle.gather(logits, valid), paddle.gather(labels, valid).astype("float32"), reduction="sum")
    loss_reg = (paddle.gather(deltas, fg) - paddle.gather(target_deltas, fg)).abs().sum()
    return {"loss_rpn_cls": loss_cls / normalizer, "loss_rpn_reg": loss_reg / normalizer}


def bbox_loss(scores: paddle.Tensor, deltas: paddle.Tensor, labels: paddle.Tensor,
              target_deltas: paddle.Tensor, num_classes: int) -> Dict[str, paddle.Tensor]:
    """Softmax CE over sampled RoIs and L1 on the deltas of the foreground RoIs' classes.

    Args:
        scores: float32 [R, C + 1] logits (background last); deltas: float32 [R, 4C] or [R, 4]
            (class-agnostic); labels: int64 [R] (C = background); target_deltas: float32 [R, 4].
    Returns:
        loss_bbox_cls (mean CE), loss_bbox_reg (L1 sum over foreground / R).
    """
    loss_cls = F.cross_entropy(scores, labels.unsqueeze(1), reduction="mean")
    fg = paddle.nonzero(labels < num_classes).flatten()
    if fg.shape[0] == 0:
        return {"loss_bbox_cls": loss_cls, "loss_bbox_reg": deltas.sum() * 0.0}
    fg_deltas = paddle.gather(deltas, fg)
    if deltas.shape[1] != 4:
        fg_deltas = paddle.take_along_axis(
            fg_deltas.reshape([fg.shape[0], num_classes, 4]),
            paddle.gather(labels, fg).reshape([-1, 1, 1]).expand([fg.shape[0], 1, 4]), axis=1)[:, 0]
    loss_reg = (fg_deltas - paddle.gather(target_deltas, fg)).abs().sum() / labels.shape[0]
    return {"loss_bbox_cls": loss_cls, "loss_bbox_reg": loss_reg}


def mask_loss(logits: paddle.Tensor, classes: paddle.Tensor, targets: paddle.Tensor) -> paddle.Tensor:
    """Mean per-pixel BCE of each RoI's own-class mask logits.

    Args:
        logits: float32 [F, C, S, S]; classes: int64 [F]; targets: float32 [F, S, S] of 0 / 1.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    index = classes.reshape([-1, 1, 1, 1]).expand([logits.shape[0], 1, logits.shape[2], logits.shape[3]])
    own = paddle.take_along_axis(logits, index, axis=1)[:, 0]
    return F.binary_cross_entropy_with_logits(own, targets, reduction="mean")
