"""Training-target assignment for the RPN and the R-CNN box heads: IoU matching and fg/bg sampling.

All per-anchor / per-RoI work is tensor ops; the only Python loop is over the images of a batch.
Crowd boxes never reach these functions: the detectors drop them from the ground truth first, so
they are neither matched nor targets (PaddleDetection's behaviour with `ignore_thresh` off).
"""
from dataclasses import dataclass
from typing import List, Tuple

import paddle

from .box_coder import box_iou, encode_boxes


@dataclass
class GroundTruth:
    """Non-crowd ground truth of a batch, images concatenated.

    boxes: float32 [G, 4] input pixels; classes: int64 [G] 0-based; masks: uint8 [G, H, W] bitmaps in
    padded batch coordinates; counts: G_i per image (Python ints, sum = G).
    """

    boxes: paddle.Tensor
    classes: paddle.Tensor
    masks: paddle.Tensor
    counts: List[int]

    def per_image(self, i: int) -> Tuple[paddle.Tensor, paddle.Tensor, int]:
        """(boxes [G_i, 4], classes [G_i], offset of image i's first box in the batch)."""
        start = sum(self.counts[:i])
        end = start + self.counts[i]
        return self.boxes[start:end], self.classes[start:end], start


@dataclass
class SampledRoIs:
    """RoIs chosen for a box-head stage and their targets, images concatenated.

    rois: float32 [R, 4]; rois_num: int32 [N]; labels: int64 [R] class index, num_classes = background;
    gt_index: int64 [R] index into `GroundTruth` of the matched box (meaningful for foreground);
    gt_boxes: float32 [R, 4] matched ground-truth boxes (zeros where an image has none).
    """

    rois: paddle.Tensor
    rois_num: paddle.Tensor
    labels: paddle.Tensor
    gt_index: paddle.Tensor
    gt_boxes: paddle.Tensor


def match_boxes(iou: paddle.Tensor, pos_thresh: float, neg_thresh: float,
                allow_low_quality: bool) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Match each candidate (column) to its best ground truth (row).

    Args:
        iou: float32 [G, N] with G >= 1.
        pos_thresh: IoU >= this is foreground; neg_thresh: IoU < this is background; between is ignored.
        allow_low_quality: also make foreground every candidate that is the best match (IoU > 0) of
            some ground truth (the RPN's rule, so that every box gets an anchor).
    Returns:
        matches int64 [N] (row index), labels int32 [N]: 1 foreground, 0 background, -1 ignored.
    """
    best = iou.max(axis=0)
    matches = iou.argmax(axis=0)
    labels = paddle.full(best.shape, -1, dtype="int32")
    labels = paddle.where(best < neg_thresh, paddle.zeros_like(labels), labels)
    labels = paddle.where(best >= pos_thresh, paddle.ones_like(labels), labels)
    if allow_low_quality:
        best_per_gt = iou.max(axis=1, keepdim=True)
        is_best = paddle.logical_and(iou > 0, iou == best_per_gt).any(axis=0)
        labels = paddle.where(is_best, paddle.ones_like(labels), labels)
    return matches, labels


def random_subset(mask: paddle.Tensor, k: int) -> paddle.Tensor:
    """int64 indices of min(k, mask.sum()) entries where mask is True, drawn at random without replacement."""
    available = int(mask.astype("int64").sum())
    k = min(k, available)
    if k <= 0:
        return paddle.zeros([0], dtype="int64")
    keys = paddle.where(mask, paddle.rand(mask.shape), paddle.full(mask.shape, -1.0))
    return paddle.topk(keys, k).indices


def sample_fg_bg(labels: paddle.Tensor, num_samples: int,
                 fg_fraction: float) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Draw up to `num_samples * fg_fraction` foreground (label 1) and fill up with background (label 0).

    Returns:
        (fg indices int64 [F], bg indices int64 [B]) with F + B <= num_samples.
    """
    fg = random_subset(labels == 1, int(num_samples * fg_fraction))
    bg = random_subset(labels == 0, num_samples - int(fg.shape[0]))
    return fg, bg


def rpn_targets(anchors: paddle.Tensor, gt: GroundTruth, num_images: int, batch_size_per_im: int,
                fg_fraction: float, positive_overlap: float,
                negative_overlap: float) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Sampled objectness labels and box deltas for all anchors of all images.

    Args:
        anchors: float32 [A, 4], every level concatenated.
    Returns:
        labels int32 [N * A] (1 fg, 0 bg, -1 not sampled) and deltas float32 [N * A, 4]
        (unit weights; meaningful where label is 1), images in batch order.
    """
    all_labels, all_deltas = [], []
    num_anchors = anchors.shape[0]
    for i in range(num_images):
        boxes, _, _ = gt.per_image(i)
        if boxes.shape[0] == 0:
            match_labels = paddle.zeros([num_anchors], dtype="int32")
            deltas = paddle.zeros([num_anchors, 4], dtype="float32")
        else:
            matches, match_labels = match_boxes(box_iou(boxes, anchors), positive_overlap,
                                                negative_overlap, allow_low_quality=True)
            deltas = encode_boxes(anchors, paddle.gather(boxes, matches))
        fg, bg = sample_fg_bg(match_labels, batch_size_per_im, fg_fraction)
        labels = paddle.full([num_anchors], -1, dtype="int32")
        labels = paddle.scatter(labels, bg, paddle.zeros([bg.shape[0]], dtype="int32"))
        labels = paddle.scatter(labels, fg, paddle.ones([fg.shape[0]], dtype="int32"))
        all_labels.append(labels)
        all_deltas.append(deltas)
    return paddle.concat(all_labels), paddle.concat(all_deltas)


def roi_targets(rois: paddle.Tensor, rois_num: List[int], gt: GroundTruth, num_classes: int,
                fg_thresh: float, bg_thresh: float, batch_size_per_im: int = 512,
                fg_fraction: float = 0.25, sample: bool = True,
                add_gt_as_proposals: bool = True) -> SampledRoIs:
    """Label RoIs with their matched class (or background) and, unless `sample` is False, subsample them.

    Args:
        rois: float32 [R, 4] proposals of all images, concatenated in image order.
        rois_num: proposals per image (Python ints).
        fg_thresh: IoU >= this is foreground; bg_thresh: IoU < this is background (Cascade stages use the
            same value for both, and `sample=False` keeps every RoI).
        add_gt_as_proposals: append each image's ground-truth boxes to its candidates first.
    """
    out_rois, out_num, out_labels, out_gt_index, out_gt_boxes = [], [], [], [], []
    start = 0
    for i, count in enumerate(rois_num):
        candidates = rois[start:start + count]
        start += count
        boxes, classes, offset = gt.per_image(i)
        if add_gt_as_proposals and boxes.shape[0] > 0:
            candidates = paddle.concat([candidates, boxes])
        n = candidates.shape[0]
        if boxes.shape[0] == 0:
            matches = paddle.zeros([n], dtype="int64")
            match_labels = paddle.zeros([n], dtype="int32")
            labels = paddle.full([n], num_classes, dtype="int64")
            matched_boxes = paddle.zeros([n, 4], dtype="float32")
        else:
            matches, match_labels = match_boxes(box_iou(boxes, candidates), fg_thresh, bg_thresh,
                                                allow_low_quality=False)
            labels = paddle.where(match_labels == 1, paddle.gather(classes, matches),
                                  paddle.full([n], num_classes, dtype="int64"))
            matched_boxes = paddle.gather(boxes, matches)
        if sample:
            fg, bg = sample_fg_bg(match_labels, batch_size_per_im, fg_fraction)
            keep = paddle.concat([fg, bg])
        else:
            keep = paddle.nonzero(match_labels >= 0).flatten()
        out_rois.append(paddle.gather(candidates, keep))
        out_labels.append(paddle.gather(labels, keep))
        out_gt_index.append(paddle.gather(matches, keep) + offset)
        out_gt_boxes.append(paddle.gather(matched_boxes, keep))
        out_num.append(int(keep.shape[0]))
    return SampledRoIs(
        rois=paddle.concat(out_rois).detach(),
        rois_num=paddle.to_tensor(out_num, dtype="int32"),
        labels=paddle.concat(out_labels),
        gt_index=paddle.concat(out_gt_index),
        gt_boxes=paddle.concat(out_gt_boxes),
    )
