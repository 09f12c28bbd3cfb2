"""Task-aligned label assignment (TOOD, https://arxiv.org/abs/2108.07755), batched over padded ground truth.

Every tensor carries the batch dimension B and the padded ground-truth dimension M; padding rows have
`gt_valid` 0 and never win an anchor. No loop over images or objects.
"""
from dataclasses import dataclass
from typing import Tuple

import paddle
import paddle.nn.functional as F

from .box_coder import box_iou


@dataclass
class TaskAlignedAssigner:
    """Assign each anchor at most one object: the top-k anchors by score^alpha * IoU^beta among those whose
    point lies inside the object; an anchor claimed by several objects goes to the one it overlaps most."""

    topk: int = 13
    alpha: float = 1.0
    beta: float = 6.0
    eps: float = 1e-9

    @paddle.no_grad()
    def __call__(self, pred_scores: paddle.Tensor, pred_boxes: paddle.Tensor, anchor_points: paddle.Tensor,
                 gt_labels: paddle.Tensor, gt_boxes: paddle.Tensor,
                 gt_valid: paddle.Tensor, bg_index: int) -> Tuple[paddle.Tensor, ...]:
        """
        Args:
            pred_scores: float32 [B, L, C] class probabilities;
            pred_boxes: float32 [B, L, 4] x1y1x2y2 pixels.
            anchor_points: float32 [L, 2] anchor centres (x, y) in pixels.
            gt_labels: int64 [B, M]; gt_boxes: float32 [B, M, 4] pixels;
            gt_valid: float32 [B, M] (0 = padding).
            bg_index: the label given to unassigned anchors (= C).
        Returns:
            labels int64 [B, L] (bg_index when unassigned); boxes float32 [B, L, 4] of the assigned object;
            scores float32 [B, L, C] the normalised alignment on the assigned class, 0 elsewhere;
            gt_index int64 [B, L] flat index b * M + m of the assigned object (meaningless when unassigned).
        """
        batch, num_anchors, num_classes = pred_scores.shape
        num_gt = gt_boxes.shape[1]
        ious = box_iou(gt_boxes, pred_boxes)  # [B, M, L]
        label_index = gt_labels.unsqueeze(-1).expand([batch, num_gt, num_anchors])
        class_scores = paddle.take_along_axis(pred_scores.transpose([0, 2, 1]), label_index, 1)
        alignment = class_scores.pow(self.alpha) * ious.pow(self.beta)
        inside = points_inside_boxes(anchor_points, gt_boxes)
        valid = gt_valid.unsqueeze(-1)
        positive = top_k_mask(alignment * inside, self.topk) * valid * inside
        # an anchor chosen by several objects keeps only the one with the highest IoU
        claimed_twice = (positive.sum(axis=1, keepdim=True) > 1).expand_as(positive)
        best_iou = F.one_hot(ious.argmax(axis=1), num_gt).transpose([0, 2, 1]).astype(positive.dtype)
        positive = paddle.where(claimed_twice, best_iou, positive)
        assigned = positive.sum(axis=1) > 0  # [B, L]
        gt_index = positive.argmax(axis=1) + paddle.arange(batch, dtype="int64").unsqueeze(-1) * num_gt
        labels = paddle.gather(gt_labels.flatten(), gt_index.flatten()).reshape([batch, num_anchors])
        labels = paddle.where(assigned, labels, paddle.full_like(labels, bg_index))
        boxes = paddle.gather(gt_boxes.reshape([-1, 4]), gt_index.flatten()).reshape([batch, num_anchors, 4])
        alignment = alignment * positive
        norm = alignment / (alignment.max(axis=-1, keepdim=True) + self.eps) \
            * (ious * positive).max(axis=-1, keepdim=True)
        scores = F.one_hot(labels, num_classes + 1)[..., :num_classes] * norm.max(axis=1).unsqueeze(-1)
        return labels, boxes, scores, gt_index


def points_inside_boxes(points: paddle.Tensor, boxes: paddle.Tensor, eps: float = 1e-9) -> paddle.Tensor:
    """float32 [B, M, L]: 1 where point l (points [L, 2], x y) lies strictly inside box m
    (boxes [B, M, 4])."""
    x, y = points[:, 0], points[:, 1]
    x1, y1, x2, y2 = [boxes[:, :, i:i + 1] for i in range(4)]
    nearest = paddle.minimum(paddle.minimum(x - x1, y - y1), paddle.minimum(x2 - x, y2 - y))
    return (nearest > eps).astype(boxes.dtype)


def top_k_mask(metric: paddle.Tensor, k: int) -> paddle.Tensor:
    """float32 [..., L]: 1 at the k largest entries of the last axis (k capped at L)."""
    k = min(k, metric.shape[-1])
    _, index = paddle.topk(metric, k, axis=-1)
    ones = paddle.ones_like(index, dtype=metric.dtype)
    return paddle.put_along_axis(paddle.zeros_like(metric), index, ones, -1)
