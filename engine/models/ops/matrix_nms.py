"""Matrix NMS (SOLOv2, https://arxiv.org/abs/2003.10152): soft suppression of overlapping masks of one
class, computed for all candidates at once as a few dense matrix operations."""
import paddle

from ...errors import ConfigError

KERNELS = ("gaussian", "linear")


def matrix_nms(masks: paddle.Tensor, areas: paddle.Tensor, labels: paddle.Tensor, scores: paddle.Tensor,
               groups: paddle.Tensor, kernel: str = "gaussian", sigma: float = 2.0) -> paddle.Tensor:
    """Decay every candidate's score by its overlap with higher-scored candidates of its class.

    A candidate j is decayed by min over higher-scored i of f(iou_ij) / f(c_i), where c_i is the largest
    IoU candidate i itself has with a higher-scored one (so a suppressed candidate suppresses less), and
    f(x) = exp(-sigma x^2) (gaussian) or 1 - x (linear).

    Args:
        masks: float32 [K, P] binary masks, flattened; areas: float32 [K] their pixel counts.
        labels: int64 [K] classes; groups: int64 [K] image of each candidate (images never interact).
        scores: float32 [K]; candidates must be ordered by score, descending, within each image.
    Returns:
        float32 [K] decayed scores.
    """
    if kernel not in KERNELS:
        raise ConfigError(f"Architecture.nms_kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    inter = paddle.matmul(masks, masks, transpose_y=True)
    # areas of 0 (placeholder rows) would make 0 / 0; real candidates' unions are >= 1 anyway
    union = (areas.unsqueeze(0) + areas.unsqueeze(1) - inter).clip(min=1.0)
    same = paddle.logical_and(labels.unsqueeze(0) == labels.unsqueeze(1),
                              groups.unsqueeze(0) == groups.unsqueeze(1)).astype(masks.dtype)
    iou = paddle.triu(inter / union * same, diagonal=1)  # [i, j]: i scored higher than j
    compensate = iou.max(axis=0).unsqueeze(1)  # [i, 1]: candidate i's own largest overlap
    if kernel == "gaussian":
        decay = paddle.exp(-sigma * (iou * iou - compensate * compensate))
    else:
        decay = (1.0 - iou) / (1.0 - compensate)
    return scores * decay.min(axis=0)
