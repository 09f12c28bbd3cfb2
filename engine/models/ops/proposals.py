"""RPN proposals: decode, clip, NMS per level (`paddle.vision.ops.generate_proposals`), then keep the
best `post_nms_top_n` of each image over all levels."""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import paddle
import paddle.vision.ops as vops

from .nms import segment_ids, top_k_per_image


@dataclass
class ProposalConfig:
    """PaddleDetection's ProposalGenerator settings for one phase (train or test)."""

    pre_nms_top_n: int
    post_nms_top_n: int
    nms_thresh: float = 0.7
    min_size: float = 0.0
    topk_after_collect: bool = False  # keep pre_nms_top_n per level, post_nms_top_n after merging levels


def generate_rpn_proposals(scores: Sequence[paddle.Tensor], deltas: Sequence[paddle.Tensor],
                           anchors: Sequence[paddle.Tensor], im_shape: paddle.Tensor,
                           cfg: ProposalConfig) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Proposals of every image.

    Args:
        scores: per level float32 [N, A, H, W] objectness logits.
        deltas: per level float32 [N, 4A, H, W] box deltas (unit weights).
        anchors: per level float32 [H * W * A, 4].
        im_shape: float32 [N, 2] (h, w) of each image before padding; proposals are clipped to it.
    Returns:
        rois float32 [R, 4] grouped by image, best first within an image; rois_num int32 [N].
    """
    per_level = cfg.pre_nms_top_n if cfg.topk_after_collect else cfg.post_nms_top_n
    rois, logits, image_ids = [], [], []
    for score, delta, anchor in zip(scores, deltas, anchors):
        level_rois, level_logits, level_num = vops.generate_proposals(
            score, delta, im_shape, anchor, paddle.ones_like(anchor),
            pre_nms_top_n=cfg.pre_nms_top_n, post_nms_top_n=per_level, nms_thresh=cfg.nms_thresh,
            min_size=cfg.min_size, return_rois_num=True)
        rois.append(level_rois)
        logits.append(level_logits.flatten())
        image_ids.append(segment_ids(level_num, paddle.shape(level_logits)[0]))
    if len(rois) == 1 and not cfg.topk_after_collect:
        return rois[0].detach(), level_num
    rois_all = paddle.concat(rois)
    keep, counts = top_k_per_image(paddle.concat(logits), paddle.concat(image_ids),
                                   paddle.shape(im_shape)[0], cfg.post_nms_top_n)
    return paddle.gather(rois_all, keep).detach(), counts


def split_counts(rois_num: paddle.Tensor) -> List[int]:
    """Python list of per-image counts (training-time helper; syncs with the device)."""
    return [int(v) for v in rois_num.numpy().tolist()]
