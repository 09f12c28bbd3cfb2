"""Cascade R-CNN box head (https://arxiv.org/abs/1712.00726): three box stages, each refining the
previous stage's boxes and trained at a higher IoU threshold.

Parameter names are an external contract: they reproduce PaddleDetection's state_dict
(`bbox_head.head.{0,1,2}.fc6/fc7`, `bbox_head.bbox_score_stage{i}`, `bbox_head.bbox_delta_stage{i}`).
"""
from typing import Dict, List, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..losses.rcnn import bbox_loss
from ..ops.assigners import GroundTruth, SampledRoIs, roi_targets
from ..ops.box_coder import decode_boxes, encode_boxes, nonempty
from ..ops.proposals import split_counts
from ..ops.roi_align import RoIAlign
from .bbox_head import RoISampling, TwoFCHead, clip_to_images, linear

STAGE_BOX_WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))


class CascadeTwoFCHead(nn.Layer):
    """One TwoFCHead per stage, registered as sublayers "0", "1", "2"."""

    def __init__(self, in_channels: int, out_channels: int = 1024, resolution: int = 7,
                 num_stages: int = 3) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stages = [self.add_sublayer(str(i), TwoFCHead(in_channels, out_channels, resolution))
                       for i in range(num_stages)]

    def forward(self, rois_feat: paddle.Tensor, stage: int = 0) -> paddle.Tensor:
        return self.stages[stage](rois_feat)


class CascadeHead(nn.Layer):
    """Three class-agnostic box regression stages; scores averaged over the stages at inference.

    Args:
        head: CascadeTwoFCHead.
        in_channels: its output width.
        num_classes: foreground classes C.
        roi_align: pools RoI features for every stage.
        sampling: stage-0 RoI sampling (as Mask R-CNN's box head).
        stage_iou: foreground IoU of each stage (later stages keep all their RoIs, unsampled).
        stage_loss_weights: weight of each stage's losses (PaddleDetection: 1 / stages each).
    """

    def __init__(self, head: CascadeTwoFCHead, in_channels: int, num_classes: int, roi_align: RoIAlign,
                 sampling: RoISampling, stage_iou: Sequence[float] = (0.5, 0.6, 0.7),
                 stage_loss_weights: Sequence[float] = (1 / 3, 1 / 3, 1 / 3)) -> None:
        super().__init__()
        self.head = head
        self.num_classes = num_classes
        self.roi_align = roi_align
        self.sampling = sampling
        self.stage_iou = tuple(stage_iou)
        self.stage_loss_weights = tuple(stage_loss_weights)
        self.box_weights = STAGE_BOX_WEIGHTS[:len(self.stage_iou)]
        self.scorers: List[nn.Layer] = []
        self.regressors: List[nn.Layer] = []
        for i in range(len(self.stage_iou)):
            score = linear(in_channels, num_classes + 1, 0.01)
            self.scorers.append(self.add_sublayer(f"bbox_score_stage{i}", score))
            self.regressors.append(self.add_sublayer(f"bbox_delta_stage{i}", linear(in_channels, 4, 0.001)))

    def _stage(self, i: int, feats: Sequence[paddle.Tensor], rois: paddle.Tensor,
               rois_num: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        feat = self.head(self.roi_align(feats, rois, rois_num), i)
        return self.scorers[i](feat), self.regressors[i](feat)

    def _refine(self, i: int, deltas: paddle.Tensor, rois: paddle.Tensor, rois_num: paddle.Tensor,
                im_shape: paddle.Tensor) -> paddle.Tensor:
        """Stage i's boxes [R, 4]: its deltas applied to its RoIs, clipped to each image."""
        return clip_to_images(decode_boxes(deltas, rois, self.box_weights[i]), rois_num, im_shape)[:, 0]

    def loss(self, feats: Sequence[paddle.Tensor], rois: paddle.Tensor, rois_num: paddle.Tensor,
             gt: GroundTruth, im_shape: paddle.Tensor) -> Tuple[Dict[str, paddle.Tensor], SampledRoIs, None]:
        """Losses of every stage (keys suffixed `_stage{i}`) and the stage-0 sample (for the mask head).

        Stage 0 samples the proposals (ground truth added); stage i > 0 takes all of stage i-1's refined,
        non-empty boxes and labels them at its own IoU threshold.
        """
        s = self.sampling
        first = roi_targets(rois, split_counts(rois_num), gt, self.num_classes, s.fg_thresh, s.bg_thresh,
                            s.batch_size_per_im, s.fg_fraction)
        losses: Dict[str, paddle.Tensor] = {}
        sampled = first
        for i, weight in enumerate(self.stage_loss_weights):
            scores, deltas = self._stage(i, feats, sampled.rois, sampled.rois_num)
            targets = encode_boxes(sampled.rois, sampled.gt_boxes, self.box_weights[i])
            for key, value in bbox_loss(scores, deltas, sampled.labels, targets, self.num_classes).items():
                losses[f"{key}_stage{i}"] = value * weight
            if i + 1 < len(self.stage_loss_weights):
                boxes = self._refine(i, deltas, sampled.rois, sampled.rois_num, im_shape).detach()
                boxes, counts = _drop_empty(boxes, sampled.rois_num)
                iou = self.stage_iou[i + 1]
                sampled = roi_targets(boxes, counts, gt, self.num_classes, iou, iou, sample=False,
                                      add_gt_as_proposals=False)
        return losses, first, None

    def predict(self, feats: Sequence[paddle.Tensor], rois: paddle.Tensor, rois_num: paddle.Tensor,
                im_shape: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """Last-stage boxes float32 [R, 1, 4] (shared by all classes) and mean stage probabilities [R, C]."""
        scores, deltas = self._stage(0, feats, rois, rois_num)
        probs = [F.softmax(scores, axis=-1)]
        for i in range(1, len(self.stage_iou)):
            rois = self._refine(i - 1, deltas, rois, rois_num, im_shape)
            scores, deltas = self._stage(i, feats, rois, rois_num)
            probs.append(F.softmax(scores, axis=-1))
        boxes = clip_to_images(decode_boxes(deltas, rois, self.box_weights[-1]), rois_num, im_shape)
        return boxes, paddle.add_n(probs)[:, :-1] / len(probs)


def _drop_empty(boxes: paddle.Tensor, rois_num: paddle.Tensor) -> Tuple[paddle.Tensor, List[int]]:
    """Remove zero-area boxes (training only); returns the boxes and the new per-image counts."""
    keep = nonempty(boxes)
    counts, start = [], 0
    for n in split_counts(rois_num):
        counts.append(int(keep[start:start + n].astype("int64").sum()))
        start += n
    return paddle.gather(boxes, paddle.nonzero(keep).flatten()), counts
