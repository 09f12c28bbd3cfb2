"""PP-YOLOE_seg training losses: varifocal classification, GIoU + distribution focal box losses, and a
box-cropped prototype mask loss, after task-aligned assignment over ground truth padded to a batch.

Same terms and normalisation as PaddleDetection's PPYOLOEInsHead (every term divided by the sum of the
assigned scores, clipped at 1), with one deliberate difference: the mask loss normalises boxes by the real
network input size, where PaddleDetection assumes 640 x 640 (identical at 640).
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import paddle
import paddle.nn.functional as F

from ..losses.dfl import distribution_focal_loss
from ..losses.iou import giou_loss
from ..losses.varifocal import varifocal_loss
from ..ops.task_aligned_assigner import TaskAlignedAssigner
from .ppyoloe_ins_head import HeadOutputs, PPYOLOEInsHead

PROTO_STRIDE = 4  # prototypes are at 1/4 of the network input


@dataclass
class PaddedTargets:
    """Ground truth padded to the batch's largest object count M (>= 1).

    labels int64 [B, M]; boxes float32 [B, M, 4] x1y1x2y2 input pixels; valid float32 [B, M] (0 = padding
    or crowd); masks float32 [B, M, H/4, W/4] instance bitmaps sampled at the prototype grid.
    """

    labels: paddle.Tensor
    boxes: paddle.Tensor
    valid: paddle.Tensor
    masks: paddle.Tensor


def pad_targets(batch: Dict[str, Any]) -> PaddedTargets:
    """Pad the batch's per-image lists (`gt_class`, `gt_bbox`, `gt_mask`, `is_crowd`) to one tensor each."""
    counts = [int(b.shape[0]) for b in batch["gt_bbox"]]
    size = max(max(counts), 1)
    labels, boxes, valid, masks = [], [], [], []
    for cls, box, mask, crowd, n in zip(batch["gt_class"], batch["gt_bbox"], batch["gt_mask"],
                                        batch["is_crowd"], counts):
        pad = size - n
        small = mask[:, ::PROTO_STRIDE, ::PROTO_STRIDE].astype("float32")
        labels.append(F.pad(cls.reshape([-1]).astype("int64"), [0, pad]))
        boxes.append(paddle.concat([box.reshape([-1, 4]).astype("float32"), paddle.zeros([pad, 4])]))
        valid.append(F.pad((crowd.reshape([-1]) == 0).astype("float32"), [0, pad]))
        masks.append(paddle.concat([small, paddle.zeros([pad] + small.shape[1:])]))
    return PaddedTargets(paddle.stack(labels), paddle.stack(boxes), paddle.stack(valid), paddle.stack(masks))


@dataclass
class LossWeights:
    """PaddleDetection's loss_weight; the mask loss uses the IoU weight as PaddleDetection does."""

    cls: float = 1.0
    iou: float = 2.5
    dfl: float = 0.5


def ppyoloe_seg_loss(head: PPYOLOEInsHead, out: HeadOutputs, targets: PaddedTargets,
                     assigner: TaskAlignedAssigner, net_hw: Tuple[int, int],
                     weights: LossWeights = LossWeights()) -> Dict[str, paddle.Tensor]:
    """Weighted losses `loss_cls`, `loss_iou`, `loss_dfl`, `loss_mask` (their sum is the training loss).

    Args:
        out: the head's outputs; targets: padded ground truth; net_hw: (H, W) of the network input.
    """
    num_classes = head.num_classes
    pred_boxes = head.decode_boxes(out)  # stride units
    labels, boxes_px, target_scores, gt_index = assigner(
        out.scores.detach(), pred_boxes.detach() * out.strides, out.points * out.strides,
        targets.labels, targets.boxes, targets.valid, num_classes)
    one_hot = F.one_hot(labels, num_classes + 1)[..., :num_classes]
    total = target_scores.sum().clip(min=1.0)
    loss_cls = varifocal_loss(out.scores, target_scores, one_hot) / total
    num_anchors = out.points.shape[0]
    positive = paddle.nonzero((labels != num_classes).flatten()).flatten()
    if positive.shape[0] == 0:  # keep every output in the graph (zero gradients) for data-parallel runs
        zero = (out.distri.sum() + out.coeffs.sum() + out.protos.sum()) * 0.0
        box_losses = {"loss_iou": zero, "loss_dfl": zero, "loss_mask": zero}
    else:
        box_losses = _positive_losses(head, out, pred_boxes, boxes_px, target_scores, gt_index, targets,
                                      positive, num_anchors, net_hw, total)
    return {"loss_cls": weights.cls * loss_cls, "loss_iou": weights.iou * box_losses["loss_iou"],
            "loss_dfl": weights.dfl * box_losses["loss_dfl"],
            "loss_mask": weights.iou * box_losses["loss_mask"]}


def _positive_losses(head: PPYOLOEInsHead, out: HeadOutputs, pred_boxes: paddle.Tensor,
                     boxes_px: paddle.Tensor, target_scores: paddle.Tensor, gt_index: paddle.Tensor,
                     targets: PaddedTargets, positive: paddle.Tensor, num_anchors: int,
                     net_hw: Tuple[int, int], total: paddle.Tensor) -> Dict[str, paddle.Tensor]:
    """Unweighted GIoU, DFL and mask losses over the positive anchors (flat indices b * L + l)."""
    anchor = positive % num_anchors
    strides = paddle.gather(out.strides, anchor)
    points = paddle.gather(out.points, anchor)
    target_px = paddle.gather(boxes_px.reshape([-1, 4]), positive)
    target = target_px / strides
    weight = paddle.gather(target_scores.sum(-1).flatten(), positive).unsqueeze(-1)
    pred = paddle.gather(pred_boxes.reshape([-1, 4]), positive)
    loss_iou = (giou_loss(pred, target) * weight).sum() / total
    sides = paddle.concat([points - target[:, :2], target[:, 2:] - points], axis=-1)
    sides = sides.clip(0, head.bins - 1 - 0.01)
    logits = paddle.gather(out.distri.reshape([-1, 4 * head.bins]), positive).reshape([-1, 4, head.bins])
    loss_dfl = (distribution_focal_loss(logits, sides) * weight).sum() / total
    loss_mask = _mask_loss(out, targets, gt_index, positive, num_anchors, target_px, net_hw) / total
    return {"loss_iou": loss_iou, "loss_dfl": loss_dfl, "loss_mask": loss_mask}


def _mask_loss(out: HeadOutputs, targets: PaddedTargets, gt_index: paddle.Tensor, positive: paddle.Tensor,
               num_anchors: int, boxes_px: paddle.Tensor, net_hw: Tuple[int, int]) -> paddle.Tensor:
    """Sum over positives of the mean box-cropped BCE between coefficient x prototype logits and the
    assigned object's bitmap, each divided by its box's area relative to the image."""
    batch, channels, mh, mw = out.protos.shape
    image = positive // num_anchors
    per_image = paddle.bincount(image, minlength=batch).numpy().tolist()
    coeffs = paddle.gather(out.coeffs.reshape([-1, channels]), positive)
    logits: List[paddle.Tensor] = []
    start = 0
    for i, n in enumerate(per_image):  # one matmul per image (never per object)
        if n:
            logits.append(paddle.matmul(coeffs[start:start + n], out.protos[i].reshape([channels, -1])))
        start += n
    logits_all = paddle.concat(logits).reshape([-1, mh, mw])
    gt = paddle.gather(targets.masks.reshape([-1, mh * mw]), paddle.gather(gt_index.flatten(), positive))
    bce = F.binary_cross_entropy_with_logits(logits_all, gt.reshape([-1, mh, mw]), reduction="none")
    net_h, net_w = float(net_hw[0]), float(net_hw[1])
    grid_boxes = boxes_px * paddle.to_tensor([mw / net_w, mh / net_h, mw / net_w, mh / net_h])
    area = (boxes_px[:, 2] - boxes_px[:, 0]) / net_w * ((boxes_px[:, 3] - boxes_px[:, 1]) / net_h)
    return ((bce * _box_crop(grid_boxes, mh, mw)).mean(axis=(1, 2)) / area).sum()


def _box_crop(boxes: paddle.Tensor, height: int, width: int) -> paddle.Tensor:
    """float32 [P, height, width]: 1 at grid cells (x, y) with x1 <= x < x2 and y1 <= y < y2."""
    xs = paddle.arange(width, dtype="float32").reshape([1, 1, -1])
    ys = paddle.arange(height, dtype="float32").reshape([1, -1, 1])
    x1, y1, x2, y2 = [boxes[:, i].reshape([-1, 1, 1]) for i in range(4)]
    return ((xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)).astype("float32")
