"""Varifocal loss (VarifocalNet, https://arxiv.org/abs/2008.13367) on probabilities."""
import paddle
import paddle.nn.functional as F


def varifocal_loss(score: paddle.Tensor, target: paddle.Tensor, label: paddle.Tensor,
                   alpha: float = 0.75, gamma: float = 2.0) -> paddle.Tensor:
    """Summed varifocal loss.

    Positives (label 1) are weighted by their IoU-aware target score, negatives by alpha * score^gamma.

    Args:
        score: float32 [..., C] predicted probabilities (after sigmoid).
        target: float32 [..., C] target scores in [0, 1] (0 off the assigned class).
        label: float32 [..., C] one-hot of the assigned class (all 0 for background).
    Returns:
        float32 [] the sum over all elements.
    """
    weight = alpha * score.pow(gamma) * (1.0 - label) + target * label
    return F.binary_cross_entropy(score, target, weight=weight, reduction="sum")


def varifocal_loss_with_logits(logits: paddle.Tensor, target: paddle.Tensor, label: paddle.Tensor,
                               alpha: float = 0.75, gamma: float = 2.0) -> paddle.Tensor:
    """`varifocal_loss` on logits (stable for confident predictions), unreduced.

    Args:
        logits: float32 [..., C] class logits; target, label: as in `varifocal_loss`.
    Returns:
        float32 [..., C] the weighted binary cross-entropy of every element.
    """
    weight = alpha * F.sigmoid(logits).pow(gamma) * (1.0 - label) + target * label
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
