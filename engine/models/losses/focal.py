"""Sigmoid focal loss (RetinaNet, https://arxiv.org/abs/1708.02002) for one-vs-all class logits."""
import paddle
import paddle.nn.functional as F


def sigmoid_focal_loss(logits: paddle.Tensor, labels: paddle.Tensor, normalizer: paddle.Tensor,
                       gamma: float = 2.0, alpha: float = 0.25) -> paddle.Tensor:
    """Summed focal loss of independent per-class sigmoids, divided by `normalizer`.

    Args:
        logits: float32 [M, C] class logits.
        labels: int64 [M] class + 1 per row, 0 = background (all C sigmoids negative).
        normalizer: float32 scalar (usually the number of positives + 1).
        gamma: focusing exponent; alpha: weight of positives (1 - alpha for negatives).
    Returns:
        float32 scalar.
    """
    num_classes = logits.shape[-1]
    one_hot = F.one_hot(labels, num_classes + 1)[:, 1:].astype(logits.dtype)
    return F.sigmoid_focal_loss(logits, one_hot, normalizer=normalizer, alpha=alpha, gamma=gamma,
                                reduction="sum")
