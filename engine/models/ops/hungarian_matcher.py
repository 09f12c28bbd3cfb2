"""One-to-one matching of DETR queries to ground truth (DETR, https://arxiv.org/abs/2005.12872).

The cost of giving gt j to query i mixes a focal class cost, box L1 and GIoU, and (with masks) a mask
BCE and dice cost on points sampled at random (one set of points for every mask of an image); the
assignment minimising the summed cost is `scipy.optimize.linear_sum_assignment`.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ..losses.iou import giou_loss
from .box_format import cxcywh_to_xyxy
from .point_sample import grid_sample_points

Match = Tuple[paddle.Tensor, paddle.Tensor]  # (query indices int64 [n], gt indices int64 [n])


@dataclass
class TermWeights:
    """Weights of the five set-prediction terms (PaddleDetection's Mask-RT-DETR values). The matcher's
    costs and the loss's coefficients are both of this kind but separate instances (PaddleDetection's
    `matcher_coeff` and `loss_coeff`), so one can be changed without the other."""

    class_weight: float = 4.0
    bbox_weight: float = 5.0
    giou_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0


class HungarianMatcher:
    """Args: costs: cost weights; num_sample_points: mask points sampled per image for the mask costs;
    alpha, gamma: the focal class cost's shape."""

    def __init__(self, costs: Optional[TermWeights] = None, num_sample_points: int = 12544,
                 alpha: float = 0.25, gamma: float = 2.0) -> None:
        self.costs = costs or TermWeights()
        self.num_sample_points = num_sample_points
        self.alpha, self.gamma = alpha, gamma

    def __call__(self, boxes: paddle.Tensor, logits: paddle.Tensor, gt_boxes: Sequence[paddle.Tensor],
                 gt_classes: Sequence[paddle.Tensor], masks: Optional[paddle.Tensor] = None,
                 gt_masks: Optional[Sequence[paddle.Tensor]] = None) -> List[Match]:
        """Match each image's queries to its ground truth.

        Args:
            boxes: float32 [B, Q, 4] (cx, cy, w, h) normalised; logits: float32 [B, Q, K].
            gt_boxes: per image float32 [M_i, 4] (cx, cy, w, h) normalised; gt_classes: int64 [M_i].
            masks: float32 [B, Q, h, w] mask logits, or None (no mask costs).
            gt_masks: per image float32 [M_i, H, W] 0/1 over the same padded image.
        Returns:
            per image (query indices, gt indices), min(Q, M_i) pairs, gt-ordered as scipy returns them.
        """
        batch, num_queries = boxes.shape[:2]
        counts = [int(c.shape[0]) for c in gt_classes]
        if sum(counts) == 0:
            empty = paddle.zeros([0], "int64")
            return [(empty, empty) for _ in range(batch)]
        with paddle.no_grad():
            cost = self._box_class_cost(boxes.detach(), logits.detach(), gt_boxes, gt_classes)
            if masks is not None and gt_masks is not None:
                cost = cost + self._mask_cost(masks.detach(), gt_masks, counts)
        cost = cost.reshape([batch, num_queries, -1]).numpy()
        matches, start = [], 0
        for i, n in enumerate(counts):
            rows, cols = linear_sum_assignment(cost[i, :, start:start + n])
            matches.append((paddle.to_tensor(rows.astype(np.int64)), paddle.to_tensor(cols.astype(np.int64))))
            start += n
        return matches

    def _box_class_cost(self, boxes: paddle.Tensor, logits: paddle.Tensor, gt_boxes: Sequence[paddle.Tensor],
                        gt_classes: Sequence[paddle.Tensor]) -> paddle.Tensor:
        """float32 [B * Q, sum M_i]: focal class cost + L1 + GIoU cost against every gt of the batch."""
        c = self.costs
        alpha, gamma = self.alpha, self.gamma
        prob = paddle.gather(F.sigmoid(logits.flatten(0, 1)), paddle.concat(gt_classes).flatten(), axis=1)
        negative = (1 - alpha) * prob.pow(gamma) * -(1 - prob + 1e-8).log()
        positive = alpha * (1 - prob).pow(gamma) * -(prob + 1e-8).log()
        pred = boxes.flatten(0, 1)
        target = paddle.concat(gt_boxes)
        l1 = (pred.unsqueeze(1) - target.unsqueeze(0)).abs().sum(-1)
        giou = giou_loss(cxcywh_to_xyxy(pred.unsqueeze(1)), cxcywh_to_xyxy(target.unsqueeze(0))).squeeze(-1)
        return c.class_weight * (positive - negative) + c.bbox_weight * l1 + c.giou_weight * (giou - 1)

    def _mask_cost(self, masks: paddle.Tensor, gt_masks: Sequence[paddle.Tensor],
                   counts: List[int]) -> paddle.Tensor:
        """float32 [B * Q, sum M_i]: mean point BCE + dice cost on points shared by an image's masks."""
        points = paddle.rand([masks.shape[0], 1, self.num_sample_points, 2]) * 2.0 - 1.0
        pred = grid_sample_points(masks, points).squeeze(-2).flatten(0, 1)  # [B*Q, P]
        per_gt = paddle.concat([p.unsqueeze(0).tile([n, 1, 1, 1]) for p, n in zip(points, counts) if n > 0])
        target = paddle.concat(list(gt_masks)).unsqueeze(1).astype("float32")
        target = grid_sample_points(target, per_gt).squeeze([1, 2])  # [N, P]
        # mean BCE of every (prediction, target) pair over the points: with off = BCE(x, 0) = softplus(x)
        # and BCE(x, 1) = off - x, sum_p on·t + off·(1 - t) = sum_p off - x·t, i.e. one softplus pass and
        # one matmul (two BCE passes and two matmuls took ~1/6 of a Mask-RT-DETR-S training step)
        off = F.softplus(pred)
        bce = off.sum(-1, keepdim=True) - paddle.matmul(pred, target, transpose_y=True)
        bce = bce / self.num_sample_points
        prob = F.sigmoid(pred)
        dice = 1 - (2 * paddle.matmul(prob, target, transpose_y=True) + 1) / (
            prob.sum(-1, keepdim=True) + target.sum(-1).unsqueeze(0) + 1)
        return self.costs.mask_weight * bce + self.costs.dice_weight * dice
