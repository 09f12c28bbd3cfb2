"""R-CNN box head: RoI features -> class scores and class-specific box deltas.

Parameter names are an external contract: they reproduce PaddleDetection's state_dict
(`bbox_head.head.fc6/fc7` or `bbox_head.head.res5.*`, `bbox_head.bbox_score`, `bbox_head.bbox_delta`).
"""
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.nn.initializer import Normal, XavierUniform

from ..losses.rcnn import bbox_loss
from ..ops.assigners import GroundTruth, SampledRoIs, roi_targets
from ..ops.box_coder import clip_boxes, decode_boxes, encode_boxes
from ..ops.nms import segment_ids
from ..ops.proposals import split_counts
from ..ops.roi_align import RoIAlign


@dataclass
class RoISampling:
    """RoI labelling and sampling for the box loss (PaddleDetection's BBoxAssigner)."""

    batch_size_per_im: int = 512
    fg_fraction: float = 0.25
    fg_thresh: float = 0.5
    bg_thresh: float = 0.5


def linear(in_features: int, out_features: int, std: float) -> nn.Linear:
    """Linear layer with N(0, std) weights and zero bias (the score / delta predictors)."""
    return nn.Linear(in_features, out_features,
                     weight_attr=paddle.ParamAttr(initializer=Normal(mean=0.0, std=std)))


def clip_to_images(boxes: paddle.Tensor, rois_num: paddle.Tensor, im_shape: paddle.Tensor) -> paddle.Tensor:
    """Clip [R, K, 4] boxes (grouped by image with rois_num) to their image's (h, w) in im_shape [N, 2]."""
    sizes = paddle.gather(im_shape, segment_ids(rois_num, paddle.shape(boxes)[0]))
    return clip_boxes(boxes, sizes[:, 0:1], sizes[:, 1:2])


class TwoFCHead(nn.Layer):
    """Flatten the pooled RoI feature and apply fc6 + ReLU, fc7 + ReLU."""

    def __init__(self, in_channels: int, out_channels: int = 1024, resolution: int = 7) -> None:
        super().__init__()
        fan = in_channels * resolution * resolution
        self.in_features = fan
        self.out_channels = out_channels
        self.fc6 = nn.Linear(fan, out_channels,
                             weight_attr=paddle.ParamAttr(initializer=XavierUniform(fan_out=fan)))
        self.fc7 = nn.Linear(out_channels, out_channels,
                             weight_attr=paddle.ParamAttr(initializer=XavierUniform()))

    def forward(self, rois_feat: paddle.Tensor) -> paddle.Tensor:
        """float32 [R, C, S, S] -> float32 [R, out_channels]."""
        # reshape to the static width, not flatten: ONNX's Reshape cannot infer [0, -1] for zero RoIs
        flat = rois_feat.reshape([-1, self.in_features])
        return F.relu(self.fc7(F.relu(self.fc6(flat))))


class BBoxHead(nn.Layer):
    """Box head of Mask R-CNN (FPN: TwoFCHead; C4: Res5Head + global average pool).

    Args:
        head: feature layer applied to pooled RoIs; its output (before pooling) is `head_feat`.
        in_channels: channels of the head's output (1024 for TwoFCHead, 2048 for Res5Head).
        num_classes: foreground classes C; scores have C + 1 columns (background last).
        roi_align: pools the RoI features the head consumes.
        sampling: training RoI sampling.
        with_pool: average-pool the head output to a vector (C4).
        box_weights: delta coding weights.
    """

    def __init__(self, head: nn.Layer, in_channels: int, num_classes: int, roi_align: RoIAlign,
                 sampling: RoISampling, with_pool: bool = False,
                 box_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0)) -> None:
        super().__init__()
        self.head = head
        self.num_classes = num_classes
        self.roi_align = roi_align
        self.sampling = sampling
        self.with_pool = with_pool
        self.box_weights = tuple(box_weights)
        self.in_channels = in_channels
        self.bbox_score = linear(in_channels, num_classes + 1, 0.01)
        self.bbox_delta = linear(in_channels, 4 * num_classes, 0.001)

    def forward(self, feats: Sequence[paddle.Tensor], rois: paddle.Tensor,
                rois_num: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
        """(scores [R, C + 1] logits, deltas [R, 4C], head_feat) for rois [R, 4] grouped by rois_num."""
        head_feat = self.head(self.roi_align(feats, rois, rois_num))
        feat = head_feat
        if self.with_pool:  # reshape, not flatten: see TwoFCHead.forward
            feat = F.adaptive_avg_pool2d(head_feat, 1).reshape([-1, self.in_channels])
        return self.bbox_score(feat), self.bbox_delta(feat), head_feat

    def loss(self, feats: Sequence[paddle.Tensor], rois: paddle.Tensor, rois_num: paddle.Tensor,
             gt: GroundTruth,
             im_shape: paddle.Tensor) -> Tuple[Dict[str, paddle.Tensor], SampledRoIs, paddle.Tensor]:
        """Sample RoIs (ground truth added), then the box losses; also returns the sample and head_feat
        (`im_shape` is unused here; the cascade head clips its refined boxes to it)."""
        s = self.sampling
        sampled = roi_targets(rois, split_counts(rois_num), gt, self.num_classes, s.fg_thresh, s.bg_thresh,
                              s.batch_size_per_im, s.fg_fraction)
        scores, deltas, head_feat = self(feats, sampled.rois, sampled.rois_num)
        targets = encode_boxes(sampled.rois, sampled.gt_boxes, self.box_weights)
        return bbox_loss(scores, deltas, sampled.labels, targets, self.num_classes), sampled, head_feat

    def predict(self, feats: Sequence[paddle.Tensor], rois: paddle.Tensor, rois_num: paddle.Tensor,
                im_shape: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """Decoded boxes float32 [R, C, 4] clipped to each image, and probabilities float32 [R, C]."""
        scores, deltas, _ = self(feats, rois, rois_num)
        boxes = clip_to_images(decode_boxes(deltas, rois, self.box_weights), rois_num, im_shape)
        return boxes, F.softmax(scores, axis=-1)[:, :-1]
