"""Mask R-CNN mask head (https://arxiv.org/abs/1703.06870): RoI features -> per-class mask logits.

Parameter names are an external contract: they reproduce PaddleDetection's state_dict
(`mask_head.head.upsample.mask_inter_feat_{i}`, `mask_head.head.upsample.conv5_mask`,
`mask_head.mask_fcn_logits`).
"""
from typing import Callable, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.nn.initializer import KaimingNormal

from ..losses.rcnn import mask_loss
from ..ops.assigners import GroundTruth, SampledRoIs
from ..ops.nms import segment_ids
from ..ops.roi_align import RoIAlign, crop_masks


class MaskFeat(nn.Layer):
    """`num_convs` 3x3 conv + ReLU, then a stride-2 2x2 transposed conv + ReLU (doubles the resolution)."""

    def __init__(self, in_channels: int, out_channels: int = 256, num_convs: int = 4) -> None:
        super().__init__()
        self.out_channels = out_channels
        upsample = nn.Sequential()
        for i in range(num_convs):
            name = f"mask_inter_feat_{i + 1}"
            upsample.add_sublayer(name, nn.Conv2D(
                in_channels if i == 0 else out_channels, out_channels, 3, padding=1,
                weight_attr=paddle.ParamAttr(initializer=KaimingNormal(fan_in=out_channels * 9))))
            upsample.add_sublayer(name + "act", nn.ReLU())
        upsample.add_sublayer("conv5_mask", nn.Conv2DTranspose(
            out_channels if num_convs > 0 else in_channels, out_channels, 2, stride=2,
            weight_attr=paddle.ParamAttr(initializer=KaimingNormal(fan_in=out_channels * 4))))
        upsample.add_sublayer("conv5_maskact", nn.ReLU())
        self.upsample = upsample

    def forward(self, feats: paddle.Tensor) -> paddle.Tensor:
        return self.upsample(feats)


class MaskHead(nn.Layer):
    """Per-class mask logits at twice the pooled resolution.

    Args:
        head: the MaskFeat body.
        num_classes: foreground classes C (one mask channel each).
        roi_align: pools the RoI features (resolution 14 in every PaddleX model).
        share_bbox_feat: C4: train on the box head's RoI features (`head_feat` of the sampled RoIs)
            and, at inference, run the box head's feature layer on freshly pooled features.
    """

    def __init__(self, head: MaskFeat, num_classes: int, roi_align: RoIAlign,
                 share_bbox_feat: bool = False) -> None:
        super().__init__()
        self.head = head
        self.num_classes = num_classes
        self.roi_align = roi_align
        self.share_bbox_feat = share_bbox_feat
        self.mask_fcn_logits = nn.Conv2D(
            head.out_channels, num_classes, 1,
            weight_attr=paddle.ParamAttr(initializer=KaimingNormal(fan_in=num_classes)))

    def forward(self, rois_feat: paddle.Tensor) -> paddle.Tensor:
        """float32 [K, C_in, S, S] -> mask logits float32 [K, C, 2S, 2S]."""
        return self.mask_fcn_logits(self.head(rois_feat))

    def loss(self, feats: Sequence[paddle.Tensor], sampled: SampledRoIs, gt: GroundTruth,
             head_feat: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        """BCE against ground-truth bitmaps RoIAligned to the mask resolution, on foreground RoIs."""
        fg = paddle.nonzero(sampled.labels < self.num_classes).flatten()
        rois = paddle.gather(sampled.rois, fg)
        if self.share_bbox_feat:
            if head_feat is None:
                raise ValueError("a mask head sharing the box head's features needs its head_feat")
            rois_feat = paddle.gather(head_feat, fg)
        else:
            num_images = sampled.rois_num.shape[0]
            image_of_fg = paddle.gather(segment_ids(sampled.rois_num, sampled.rois.shape[0]), fg)
            counts = paddle.bincount(image_of_fg, minlength=num_images).astype("int32")
            rois_feat = self.roi_align(feats, rois, counts)
        logits = self(rois_feat)
        targets = crop_masks(gt.masks, paddle.gather(sampled.gt_index, fg), rois, logits.shape[-1])
        return mask_loss(logits, paddle.gather(sampled.labels, fg), targets)

    def predict(self, feats: Sequence[paddle.Tensor], boxes: paddle.Tensor, boxes_num: paddle.Tensor,
                classes: paddle.Tensor,
                feat_func: Optional[Callable[[paddle.Tensor], paddle.Tensor]] = None) -> paddle.Tensor:
        """Mask probabilities float32 [K, 2S, 2S] of each box's own class.

        Args:
            boxes: float32 [K, 4] detections in input pixels, grouped by image with boxes_num int32 [N].
            classes: int64 [K]; feat_func: the box head's feature layer (C4 only).
        """
        rois_feat = self.roi_align(feats, boxes, boxes_num)
        if feat_func is not None:
            rois_feat = feat_func(rois_feat)
        logits = self(rois_feat)
        size = logits.shape[2]
        index = classes.reshape([-1, 1, 1, 1]).expand([paddle.shape(logits)[0], 1, size, size])
        return F.sigmoid(paddle.take_along_axis(logits, index, axis=1)[:, 0])
