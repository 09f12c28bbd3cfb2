"""RPN proposals: per level, the best `pre_nms_top_n` anchors of each image are decoded, clipped,
filtered and NMS-ed; then each image keeps its best `post_nms_top_n` over all levels.

This is `paddle.vision.ops.generate_proposals` (pixel_offset=False) written with batched tensor ops:
the op's `rois_num` output is declared float32 but holds int32 under `paddle.jit.to_static` in
Paddle 3.3, so nothing that reads it can be exported. Written this way, all images of a batch go
through one top-k and one NMS call per level.
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import paddle

from .box_coder import clip_boxes, decode_boxes
from .nms import nms_keep, top_k_per_image


@dataclass
class ProposalConfig:
    """PaddleDetection's ProposalGenerator settings for one phase (train or test)."""

    pre_nms_top_n: int
    post_nms_top_n: int
    nms_thresh: float = 0.7
    min_size: float = 0.0  # the op never keeps boxes under 1 pixel, whatever this says
    topk_after_collect: bool = False  # keep pre_nms_top_n per level, post_nms_top_n after merging levels


def _level_proposals(score: paddle.Tensor, delta: paddle.Tensor, anchors: paddle.Tensor,
                     im_shape: paddle.Tensor, pre_nms_top_n: int, post_nms_top_n: int, nms_thresh: float,
                     min_size: float) -> Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
    """One level's proposals: boxes [P, 4], logits [P], image index [P] (int64), grouped by image."""
    num_images = paddle.shape(score)[0]
    logits = score.transpose([0, 2, 3, 1]).reshape([num_images, -1])
    deltas = delta.transpose([0, 2, 3, 1]).reshape([num_images, -1, 4])
    k = paddle.shape(logits)[1].clip(max=pre_nms_top_n)
    top_logits, index = paddle.topk(logits, k, axis=1)  # [N, k]
    top_deltas = paddle.take_along_axis(deltas, index.unsqueeze(-1).expand([-1, -1, 4]), axis=1)
    boxes = decode_boxes(top_deltas.reshape([-1, 4]), paddle.gather(anchors, index.flatten()))[:, 0]
    # a broadcast sum, not expand_as: paddle2onnx maps expand_as to an Expand that ignores dynamic shapes
    image = (paddle.arange(0, num_images, dtype="int64").unsqueeze(1) + paddle.zeros_like(index)).flatten()
    sizes = paddle.gather(im_shape, image)  # [N * k, 2]
    boxes = clip_boxes(boxes, sizes[:, 0], sizes[:, 1])
    min_side = max(min_size, 1.0)
    keep = paddle.nonzero(paddle.logical_and(boxes[:, 2] - boxes[:, 0] >= min_side,
                                             boxes[:, 3] - boxes[:, 1] >= min_side)).flatten()
    boxes, top_logits, image = paddle.gather(boxes, keep), paddle.gather(top_logits.flatten(), keep), \
        paddle.gather(image, keep)
    # NMS of all images at once: each image is moved below the previous one, out of its reach.
    span = sizes[:, 0].max() + 1.0
    shift = image.astype("float32").unsqueeze(1) * span
    # a product, not a concat: a level left without boxes must not reach oneDNN's concat (it crashes)
    offsets = shift * paddle.to_tensor([0.0, 1.0, 0.0, 1.0], "float32")
    keep = nms_keep(boxes + offsets, top_logits, nms_thresh)
    top, _ = top_k_per_image(paddle.gather(top_logits, keep), paddle.gather(image, keep), num_images,
                             post_nms_top_n)
    keep = paddle.gather(keep, top)
    return paddle.gather(boxes, keep), paddle.gather(top_logits, keep), paddle.gather(image, keep)


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
    parts = [_level_proposals(s, d, a, im_shape, cfg.pre_nms_top_n, per_level, cfg.nms_thresh, cfg.min_size)
             for s, d, a in zip(scores, deltas, anchors)]
    boxes = paddle.concat([p[0] for p in parts])
    keep, counts = top_k_per_image(paddle.concat([p[1] for p in parts]), paddle.concat([p[2] for p in parts]),
                                   paddle.shape(im_shape)[0], cfg.post_nms_top_n)
    return paddle.gather(boxes, keep).detach(), counts


def split_counts(rois_num: paddle.Tensor) -> List[int]:
    """Python list of per-image counts (training-time helper; syncs with the device)."""
    return [int(v) for v in rois_num.numpy().tolist()]
