"""Distribution focal loss (Generalized Focal Loss, https://arxiv.org/abs/2006.04388)."""
import paddle
import paddle.nn.functional as F


def distribution_focal_loss(logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
    """Cross-entropy towards the two bins around each continuous target, weighted by closeness.

    Args:
        logits: float32 [P, 4, B] bin logits of each box side (bins 0..B-1).
        target: float32 [P, 4] side distances in bin units, in [0, B - 1).
    Returns:
        float32 [P, 1]: mean over the 4 sides.
    """
    left = target.floor().astype("int64")
    right = left + 1
    weight_left = right.astype("float32") - target
    weight_right = 1.0 - weight_left
    loss = (F.cross_entropy(logits, left.unsqueeze(-1), reduction="none").squeeze(-1) * weight_left
            + F.cross_entropy(logits, right.unsqueeze(-1), reduction="none").squeeze(-1) * weight_right)
    return loss.mean(-1, keepdim=True)
