"""Mask DINO's set loss (https://arxiv.org/abs/2206.02777) as Mask-RT-DETR trains it.

Per prediction set (the last decoder layer; every earlier layer, the encoder's selection and the initial
queries as auxiliary sets; the denoising queries with their known matches): varifocal class loss whose
positive target is the matched mask IoU (box IoU for the auxiliary sets, as PaddleDetection does), box L1
and GIoU, and mask BCE + dice on points sampled where the predicted mask is least certain (PointRend).
Every term is normalised by the number of ground-truth instances in the batch (averaged over ranks).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F

from ..heads.mask_rtdetr_transformer import TransformerOutput
from ..ops.box_format import cxcywh_to_xyxy
from ..ops.hungarian_matcher import HungarianMatcher, Match, TermWeights
from ..ops.point_sample import grid_sample_points
from .dice import linear_dice_loss
from .iou import giou_loss
from .varifocal import varifocal_loss_with_logits

TERMS = ("class", "bbox", "giou", "mask", "dice")


@dataclass
class Targets:
    """Per image: classes int64 [M_i], boxes float32 [M_i, 4] (cx, cy, w, h) normalised to the padded
    image, masks float32 [M_i, H, W] 0/1 over the padded image."""

    classes: List[paddle.Tensor]
    boxes: List[paddle.Tensor]
    masks: List[paddle.Tensor]


@dataclass
class PredictionSets:
    """Stacked prediction sets, the main one last: logits, boxes, masks lists of [B, Q, ...]."""

    logits: List[paddle.Tensor]
    boxes: List[paddle.Tensor]
    masks: List[paddle.Tensor]


class MaskDINOLoss:
    """Args: num_classes; matcher; weights; num_sample_points: mask points per matched mask;
    oversample_ratio, important_sample_ratio: PointRend's uncertainty sampling."""

    def __init__(self, num_classes: int, matcher: HungarianMatcher, weights: Optional[TermWeights] = None,
                 num_sample_points: int = 12544, oversample_ratio: float = 3.0,
                 important_sample_ratio: float = 0.75) -> None:
        self.num_classes, self.matcher, self.weights = num_classes, matcher, weights or TermWeights()
        self.num_points = num_sample_points
        self.num_oversampled = int(num_sample_points * oversample_ratio)
        self.num_important = int(num_sample_points * important_sample_ratio)

    def __call__(self, out: TransformerOutput, targets: Targets) -> Dict[str, paddle.Tensor]:
        """All loss terms: loss_{class,bbox,giou,mask,dice}[_aux][_dn], scalars."""
        matching, denoising = _prediction_sets(out)
        num_gts = _num_gts(targets.classes)
        losses = self._set_losses(matching, targets, num_gts, "", None)
        if denoising is not None and out.denoising is not None:
            meta = out.denoising
            matches = [(idx, paddle.arange(c.shape[0], dtype="int64").tile([meta.num_group]))
                       for idx, c in zip(meta.positive_idx, targets.classes)]
            losses.update(self._set_losses(denoising, targets, num_gts * meta.num_group, "_dn", matches))
        else:
            losses.update({k + "_dn": paddle.zeros([]) for k in list(losses)})
        return losses

    def _set_losses(self, sets: PredictionSets, targets: Targets, num_gts: paddle.Tensor, postfix: str,
                    fixed: Optional[List[Match]]) -> Dict[str, paddle.Tensor]:
        """Losses of the main (last) set, then the auxiliary ones summed term by term."""
        main = self._losses(sets.logits[-1], sets.boxes[-1], sets.masks[-1], targets, num_gts, fixed, True)
        aux: Dict[str, List[paddle.Tensor]] = {t: [] for t in TERMS}
        for logits, boxes, masks in zip(sets.logits[:-1], sets.boxes[:-1], sets.masks[:-1]):
            for term, value in self._losses(logits, boxes, masks, targets, num_gts, fixed, False).items():
                aux[term].append(value)
        losses = {f"loss_{t}{postfix}": main[t] for t in TERMS}
        losses.update({f"loss_{t}_aux{postfix}": paddle.add_n(aux[t]) for t in TERMS if aux[t]})
        return losses

    def _losses(self, logits: paddle.Tensor, boxes: paddle.Tensor, masks: paddle.Tensor, targets: Targets,
                num_gts: paddle.Tensor, fixed: Optional[List[Match]],
                mask_iou: bool) -> Dict[str, paddle.Tensor]:
        """The five terms of one prediction set."""
        matches = fixed if fixed is not None else self.matcher(boxes, logits, targets.boxes, targets.classes,
                                                               masks, targets.masks)
        w = self.weights
        if sum(int(c.shape[0]) for c in targets.classes) == 0:
            zero = paddle.zeros([])
            return {"class": w.class_weight * self._class_loss(logits, matches, targets, num_gts, None),
                    "bbox": zero, "giou": zero, "mask": zero, "dice": zero}
        src_boxes, gt_boxes = _gather_matched(boxes, targets.boxes, matches)
        src_masks, gt_masks = _gather_matched(masks, targets.masks, matches)
        if mask_iou:
            iou = _matched_mask_iou(src_masks.detach(), gt_masks)
        else:
            iou = _matched_box_iou(cxcywh_to_xyxy(src_boxes.detach()), cxcywh_to_xyxy(gt_boxes))
        l1 = F.l1_loss(src_boxes, gt_boxes, reduction="sum") / num_gts
        giou = giou_loss(cxcywh_to_xyxy(src_boxes), cxcywh_to_xyxy(gt_boxes)).sum() / num_gts
        mask_bce, dice = self._mask_losses(src_masks, gt_masks, num_gts)
        return {"class": w.class_weight * self._class_loss(logits, matches, targets, num_gts, iou),
                "bbox": w.bbox_weight * l1, "giou": w.giou_weight * giou,
                "mask": w.mask_weight * mask_bce, "dice": w.dice_weight * dice}

    def _class_loss(self, logits: paddle.Tensor, matches: List[Match], targets: Targets,
                    num_gts: paddle.Tensor, iou: Optional[paddle.Tensor]) -> paddle.Tensor:
        """Varifocal loss with the matched IoU as the positive target (plain focal loss without gt)."""
        batch, num_queries = logits.shape[:2]
        labels = paddle.full([batch * num_queries], self.num_classes, "int64")
        index = None
        if iou is not None:
            used = [(i, c, src, dst) for i, (c, (src, dst)) in enumerate(zip(targets.classes, matches))
                    if src.shape[0] > 0]
            index = paddle.concat([src + i * num_queries for i, _, src, _ in used])
            matched = paddle.concat([paddle.gather(c, dst) for _, c, _, dst in used])
            labels = paddle.scatter(labels, index, matched.astype("int64"))
        one_hot = F.one_hot(labels.reshape([batch, num_queries]), self.num_classes + 1)[..., :-1]
        normalizer = num_gts / num_queries
        if iou is None:
            loss = F.sigmoid_focal_loss(logits, one_hot, reduction="none")
            return loss.mean(1).sum() / normalizer
        score = paddle.scatter(paddle.zeros([batch * num_queries]), index, iou.flatten())
        score = score.reshape([batch, num_queries, 1]) * one_hot
        return varifocal_loss_with_logits(logits, score, one_hot).mean(1).sum() / normalizer

    def _mask_losses(self, src: paddle.Tensor, target: paddle.Tensor,
                     num_gts: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """Point-sampled BCE and dice of matched mask logits [n, h, w] against 0/1 targets [n, H, W]."""
        grid = 2.0 * self._uncertain_points(src).unsqueeze(1) - 1.0  # [n, 1, P, 2]
        src_points = grid_sample_points(src.unsqueeze(1), grid).squeeze([1, 2])
        target_points = grid_sample_points(target.unsqueeze(1), grid).squeeze([1, 2]).detach()
        bce = F.binary_cross_entropy_with_logits(src_points, target_points, reduction="none")
        dice = linear_dice_loss(F.sigmoid(src_points), target_points)
        return bce.mean(1).sum() / num_gts, dice.sum() / num_gts

    def _uncertain_points(self, masks: paddle.Tensor) -> paddle.Tensor:
        """float32 [n, P, 2] in [0, 1]: the most uncertain (|logit| smallest) of `oversample` random
        points, plus uniformly random ones."""
        masks = masks.detach()
        count = masks.shape[0]
        candidates = paddle.rand([count, 1, self.num_oversampled, 2])
        logits = grid_sample_points(masks.unsqueeze(1), 2.0 * candidates - 1.0).squeeze([1, 2])
        points = most_uncertain(candidates.squeeze(1), logits, self.num_important)
        num_random = self.num_points - self.num_important
        if num_random > 0:
            points = paddle.concat([points, paddle.rand([count, num_random, 2])], axis=1)
        return points


def most_uncertain(points: paddle.Tensor, logits: paddle.Tensor, k: int) -> paddle.Tensor:
    """float32 [n, k, 2]: the k of `points` [n, m, 2] whose `logits` [n, m] are closest to 0 (no gradient).

    The losses average over the points, so their order does not matter: on CPU numpy's argpartition picks
    them in linear time (Paddle's topk with k ~ m / 4 and the broadcast take_along_axis were ~15 % of a
    Mask-RT-DETR-S training step, the denoising sets selecting from 37,632 points per instance); other
    devices keep topk.
    """
    if k <= 0:
        return paddle.zeros([points.shape[0], 0, 2], points.dtype)
    if not points.place.is_cpu_place():
        _, index = paddle.topk(-logits.abs(), k, axis=1)
        return paddle.take_along_axis(points, index.unsqueeze(-1), axis=1, broadcast=True)
    distance = np.abs(logits.numpy())
    index = np.argpartition(distance, k - 1, axis=1)[:, :k] if k < distance.shape[1] else None
    chosen = points.numpy() if index is None else np.take_along_axis(points.numpy(), index[..., None], axis=1)
    return paddle.to_tensor(chosen)


def _prediction_sets(out: TransformerOutput) -> Tuple[PredictionSets, Optional[PredictionSets]]:
    """Matching sets [encoder, initial?, layer 1..L] and denoising sets [initial?, layer 1..L]."""
    dec = out.decoder
    matching = PredictionSets(list(dec.logits), list(dec.boxes), list(dec.masks))
    denoising = None
    if out.denoising is not None:
        split = out.denoising.split
        parts = [[paddle.split(t, split, axis=1) for t in ts] for ts in (dec.logits, dec.boxes, dec.masks)]
        denoising = PredictionSets(*[[p[0] for p in ps] for ps in parts])
        matching = PredictionSets(*[[p[1] for p in ps] for ps in parts])
        if out.initial is not None:
            for i, tensor in enumerate(out.initial):
                dn_part, match_part = paddle.split(tensor, split, axis=1)
                getattr(denoising, _FIELDS[i]).insert(0, dn_part)
                getattr(matching, _FIELDS[i]).insert(0, match_part)
    for i, tensor in enumerate(out.encoder):
        getattr(matching, _FIELDS[i]).insert(0, tensor)
    return matching, denoising


_FIELDS = ("logits", "boxes", "masks")


def _num_gts(classes: Sequence[paddle.Tensor]) -> paddle.Tensor:
    """Ground-truth instances in the batch (mean over data-parallel ranks), at least 1: float32 []."""
    count = paddle.to_tensor(float(sum(int(c.shape[0]) for c in classes)), dtype="float32")
    world = paddle.distributed.get_world_size()
    if world > 1:
        paddle.distributed.all_reduce(count)
        count = count / world
    return count.clip(min=1.0)


def _gather_matched(pred: paddle.Tensor, targets: Sequence[paddle.Tensor],
                    matches: List[Match]) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Matched predictions pred[b, src] and targets[b][dst], concatenated over the batch."""
    pairs = [(p, t, i, j) for p, t, (i, j) in zip(pred, targets, matches) if i.shape[0] > 0]
    src = paddle.concat([paddle.gather(p, i, axis=0) for p, _, i, _ in pairs])
    dst = paddle.concat([paddle.gather(t, j, axis=0) for _, t, _, j in pairs])
    return src, dst


def _matched_box_iou(a: paddle.Tensor, b: paddle.Tensor, eps: float = 1e-9) -> paddle.Tensor:
    """IoU of matched (x1, y1, x2, y2) boxes [n, 4] -> [n, 1]."""
    wh = (paddle.minimum(a[:, 2:], b[:, 2:]) - paddle.maximum(a[:, :2], b[:, :2])).clip(min=0)
    inter = wh[:, 0:1] * wh[:, 1:2]
    area_a = ((a[:, 2:3] - a[:, 0:1]) * (a[:, 3:4] - a[:, 1:2])).clip(min=0)
    area_b = ((b[:, 2:3] - b[:, 0:1]) * (b[:, 3:4] - b[:, 1:2])).clip(min=0)
    return inter / (area_a + area_b - inter + eps)


def _matched_mask_iou(src: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
    """IoU of binarised matched masks at twice the prediction's resolution: logits [n, h, w] vs 0/1
    targets [n, H, W] -> [n, 1] (smoothed by 0.01 so empty pairs score 1)."""
    src = F.interpolate(src.unsqueeze(0), scale_factor=2, mode="bilinear", align_corners=False).squeeze(0)
    target = F.interpolate(target.unsqueeze(0), size=src.shape[-2:], mode="bilinear",
                           align_corners=False).squeeze(0)
    src = (F.sigmoid(src.flatten(1)) > 0.5).astype("float32")
    target = (target.flatten(1) > 0.5).astype("float32")
    inter = (src * target).sum(1)
    union = src.sum(1) + target.sum(1) - inter
    return ((inter + 1e-2) / (union + 1e-2)).unsqueeze(-1)
