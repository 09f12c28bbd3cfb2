"""Dice loss (V-Net, https://arxiv.org/abs/1606.04797) between predicted and target masks."""
import paddle

SMOOTH = 0.001  # added to each squared sum, so empty masks give a defined loss


def dice_loss(probs: paddle.Tensor, targets: paddle.Tensor) -> paddle.Tensor:
    """Per-mask dice loss 1 - 2 |p t| / (|p|^2 + |t|^2).

    Args:
        probs: float32 [..., P] mask probabilities, flattened over the last axis.
        targets: float32 [..., P] 0/1 target masks, same shape.
    Returns:
        float32 [...] one loss per mask (unreduced).
    """
    inter = (probs * targets).sum(axis=-1)
    denominator = (probs * probs).sum(axis=-1) + (targets * targets).sum(axis=-1) + 2 * SMOOTH
    return 1.0 - 2.0 * inter / denominator


def linear_dice_loss(probs: paddle.Tensor, targets: paddle.Tensor, smooth: float = 1.0) -> paddle.Tensor:
    """Per-mask dice loss with plain sums, 1 - (2 |p t| + smooth) / (|p| + |t| + smooth) (the DETR family's).

    Args:
        probs, targets: float32 [..., P] as in `dice_loss`.
    Returns:
        float32 [...] one loss per mask (unreduced).
    """
    inter = (probs * targets).sum(axis=-1)
    return 1.0 - (2.0 * inter + smooth) / (probs.sum(axis=-1) + targets.sum(axis=-1) + smooth)
