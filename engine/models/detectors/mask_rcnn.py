"""Mask R-CNN (https://arxiv.org/abs/1703.06870), with FPN or C4 (res5 in the RoI head).

Parameter names are an external contract: sublayers `backbone`, `neck`, `rpn_head`, `bbox_head`,
`mask_head` reproduce PaddleDetection's state_dict (../shared/reference/params/MaskRCNN-*.json).
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn

from ...config.architectures import RCNNArchitecture
from ...errors import ConfigError
from ..backbones.resnet import ResNet
from ..heads.bbox_head import BBoxHead, RoISampling, TwoFCHead
from ..heads.mask_head import MaskFeat, MaskHead
from ..heads.res5_head import Res5Head
from ..heads.rpn_head import RPNHead, RPNSampling
from ..necks.fpn import FPN
from ..ops.anchors import AnchorGenerator
from ..ops.assigners import GroundTruth
from ..ops.box_coder import clip_boxes, nonempty
from ..ops.mask_paste import paste_masks
from ..ops.nms import drop_sentinel, multiclass_nms, segment_ids
from ..ops.proposals import ProposalConfig
from ..ops.roi_align import RoIAlign
from .export_inputs import image_input_spec

Batch = Dict[str, Any]
FPN_STRIDES = [4, 8, 16, 32, 64]  # P2..P6
C4_STRIDE = 16  # res4


@dataclass
class PostProcess:
    """Detection post-processing (PaddleDetection's MultiClassNMS + MaskPostProcess settings)."""

    score_threshold: float = 0.05  # drop class scores at or below this before NMS
    nms_threshold: float = 0.5  # per-class IoU threshold
    keep_top_k: int = 100  # detections kept per image
    mask_threshold: float = 0.5  # binarisation of the pasted mask probabilities


def ground_truth(batch: Batch) -> GroundTruth:
    """Concatenate the batch's per-image targets, dropping crowd regions (never assigned, never targets)."""
    boxes, classes, masks, counts = [], [], [], []
    fields = zip(batch["gt_bbox"], batch["gt_class"], batch["gt_mask"], batch["is_crowd"])
    for box, cls, mask, crowd in fields:
        keep = paddle.nonzero(crowd.flatten() == 0).flatten()
        boxes.append(paddle.gather(box.reshape([-1, 4]).astype("float32"), keep))
        classes.append(paddle.gather(cls.flatten().astype("int64"), keep))
        masks.append(paddle.gather(mask, keep))
        counts.append(int(keep.shape[0]))
    return GroundTruth(paddle.concat(boxes), paddle.concat(classes), paddle.concat(masks), counts)


class MaskRCNN(nn.Layer):
    """Backbone (+ FPN) -> RPN -> box head -> mask head on the final detections.

    Args:
        backbone: returns a list of feature maps (C4: [res4]; FPN: res2..res5).
        neck: FPN over the backbone outputs, or None (C4).
        rpn_head: RPNHead over every feature level.
        bbox_head: BBoxHead (or CascadeHead) with `loss(feats, rois, rois_num, gt, im_shape)` and
            `predict(feats, rois, rois_num, im_shape) -> (boxes [R, C or 1, 4], probs [R, C])`.
        mask_head: MaskHead.
        post: post-processing settings.
        draw_threshold: default score threshold of predictions shown to users.
    """

    PART_ORDER = ("backbone", "neck", "rpn_head", "bbox_head", "mask_head")  # PaddleDetection's MaskRCNN

    def __init__(self, backbone: nn.Layer, neck: Optional[nn.Layer], rpn_head: nn.Layer,
                 bbox_head: nn.Layer, mask_head: nn.Layer, post: PostProcess,
                 draw_threshold: float = 0.5) -> None:
        super().__init__()
        parts = {"backbone": backbone, "neck": neck, "rpn_head": rpn_head, "bbox_head": bbox_head,
                 "mask_head": mask_head}
        for name in self.PART_ORDER:  # registration order = state_dict order
            setattr(self, name, parts[name])
        self.post = post
        self.draw_threshold = draw_threshold

    def _features(self, image: paddle.Tensor) -> List[paddle.Tensor]:
        feats = self.backbone(image)
        return self.neck(feats) if self.neck is not None else feats

    def loss(self, batch: Batch) -> Dict[str, paddle.Tensor]:
        """Training losses: loss_rpn_cls, loss_rpn_reg, the box losses (per stage for Cascade), loss_mask."""
        feats = self._features(batch["image"])
        im_shape = batch["im_shape"]
        gt = ground_truth(batch)
        rois, rois_num, losses = self.rpn_head.loss(feats, im_shape, gt)
        box_losses, sampled, head_feat = self.bbox_head.loss(feats, rois, rois_num, gt, im_shape)
        losses.update(box_losses)
        losses["loss_mask"] = self.mask_head.loss(feats, sampled, gt, head_feat)
        return losses

    def predict(self, batch: Batch) -> Dict[str, paddle.Tensor]:
        """Detections of a batch (eval mode); see `forward`."""
        return self(batch["image"], batch["im_shape"], batch["scale_factor"])

    def forward(self, image: paddle.Tensor, im_shape: paddle.Tensor,
                scale_factor: paddle.Tensor) -> Dict[str, paddle.Tensor]:
        """Inference.

        Args:
            image: float32 [N, 3, H, W] normalised, padded; im_shape: float32 [N, 2] (h, w) resized size;
            scale_factor: float32 [N, 2] (h, w) resized / original.
        Returns:
            bbox float32 [K, 6] rows (class, score, x1, y1, x2, y2) in original pixels, images in order;
            bbox_num int32 [N]; mask uint8 [K, Hm, Wm] 0/1 full-image masks, Hm x Wm the largest original
            size in the batch (crop each to its image's original size).
        """
        feats = self._features(image)
        rois, rois_num = self.rpn_head.predict(feats, im_shape)
        boxes, probs = self.bbox_head.predict(feats, rois, rois_num, im_shape)
        p = self.post
        dets, det_num = multiclass_nms(boxes, probs, rois_num, p.score_threshold, p.nms_threshold,
                                       p.keep_top_k, sentinel=True)
        dets, det_num, original_boxes, original_size = _to_original(dets, det_num, im_shape, scale_factor)
        feat_func = self.bbox_head.head if self.mask_head.share_bbox_feat else None
        probs = self.mask_head.predict(feats, dets[:, 2:], det_num, dets[:, 0].astype("int64"), feat_func)
        max_size = original_size.max(axis=0).astype("int32")
        masks = paste_masks(probs, original_boxes, max_size[0], max_size[1], p.mask_threshold)
        bbox = paddle.concat([dets[:, :2], original_boxes], axis=1)
        bbox, det_num, masks = drop_sentinel(bbox, det_num, masks)
        return {"bbox": bbox, "bbox_num": det_num, "mask": masks}

    def export_spec(self) -> Dict[str, paddle.static.InputSpec]:
        """Inputs of `forward`, in order, for `paddle.jit.to_static` (batch and image size dynamic)."""
        return image_input_spec()


def _to_original(dets: paddle.Tensor, det_num: paddle.Tensor, im_shape: paddle.Tensor,
                 scale_factor: paddle.Tensor) -> Tuple[paddle.Tensor, ...]:
    """Rescale detections to original pixels, clip them to the original image, drop those left empty.

    Returns the kept detections (input pixels), their counts per image, their original-pixel boxes, and
    the original (h, w) of every image (PaddleDetection's rounding: floor(im_shape / scale + 0.5)).
    """
    original_size = paddle.floor(im_shape / scale_factor + 0.5)
    image_of = segment_ids(det_num, paddle.shape(dets)[0])
    scale = paddle.gather(scale_factor, image_of)
    size = paddle.gather(original_size, image_of)
    boxes = dets[:, 2:] / paddle.concat([scale[:, 1:2], scale[:, 0:1], scale[:, 1:2], scale[:, 0:1]], axis=1)
    boxes = clip_boxes(boxes, size[:, 0], size[:, 1])
    keep = paddle.nonzero(nonempty(boxes)).flatten()
    images = paddle.arange(0, paddle.shape(det_num)[0], dtype="int64")
    kept_image = paddle.gather(image_of, keep)
    counts = (kept_image.unsqueeze(0) == images.unsqueeze(1)).astype("int32").sum(axis=1).astype("int32")
    return paddle.gather(dets, keep), counts, paddle.gather(boxes, keep), original_size


def _top_n(value: Optional[int], default: int) -> int:
    return default if value is None else value


def build_backbone(arch: RCNNArchitecture, depth: int, variant: str, groups: int, base_width: int, fpn: bool,
                   lr_mult_list: Sequence[float]) -> ResNet:
    """ResNet: all four stages for FPN, res2-res4 (returning res4) for C4."""
    return ResNet(depth=depth, variant=variant, groups=groups, base_width=base_width,
                  base_channels=arch.base_channels, return_idx=[0, 1, 2, 3] if fpn else [2],
                  num_stages=4 if fpn else 3, freeze_at=arch.freeze_at, freeze_norm=arch.freeze_norm,
                  lr_mult_list=list(lr_mult_list))


def build_fpn(arch: RCNNArchitecture, backbone: ResNet) -> FPN:
    """FPN over res2-res5 with P6, `arch.fpn_channels` wide."""
    return FPN(in_channels=backbone.out_channels, out_channel=arch.fpn_channels,
               spatial_scales=[1.0 / s for s in backbone.out_strides])


def build_rpn_head(arch: RCNNArchitecture, in_channels: int, fpn: bool, cascade: bool) -> RPNHead:
    """RPN over P2-P6 (one anchor size per level) or over res4 (every size at stride 16)."""
    if fpn:
        if len(arch.anchor_sizes) != len(FPN_STRIDES):
            raise ConfigError(f"Architecture.anchor_sizes needs {len(FPN_STRIDES)} sizes (one per FPN level "
                              f"P2..P6), got {list(arch.anchor_sizes)}")
        anchors = AnchorGenerator([[s] for s in arch.anchor_sizes], arch.aspect_ratios, FPN_STRIDES)
        train = ProposalConfig(_top_n(arch.rpn_pre_nms_top_n_train, 2000),
                               _top_n(arch.rpn_post_nms_top_n_train, 2000 if cascade else 1000),
                               arch.rpn_nms_threshold, topk_after_collect=True)
        test = ProposalConfig(_top_n(arch.rpn_pre_nms_top_n_test, 1000), arch.rpn_post_nms_top_n_test,
                              arch.rpn_nms_threshold)
    else:
        anchors = AnchorGenerator([list(arch.anchor_sizes)], arch.aspect_ratios, [C4_STRIDE])
        train = ProposalConfig(_top_n(arch.rpn_pre_nms_top_n_train, 12000),
                               _top_n(arch.rpn_post_nms_top_n_train, 2000), arch.rpn_nms_threshold)
        test = ProposalConfig(_top_n(arch.rpn_pre_nms_top_n_test, 6000), arch.rpn_post_nms_top_n_test,
                              arch.rpn_nms_threshold)
    sampling = RPNSampling(arch.rpn_batch_size_per_im, arch.rpn_fg_fraction, arch.rpn_positive_overlap,
                           arch.rpn_negative_overlap)
    return RPNHead(in_channels, anchors, train, test, sampling)


def roi_sampling(arch: RCNNArchitecture) -> RoISampling:
    return RoISampling(arch.roi_batch_size_per_im, arch.roi_fg_fraction, arch.roi_fg_threshold,
                       arch.roi_fg_threshold)


def roi_scales(fpn: bool) -> List[float]:
    """Spatial scales RoIs are pooled from: P2-P5, or res4."""
    return [1.0 / s for s in FPN_STRIDES[:4]] if fpn else [1.0 / C4_STRIDE]


def build_mask_head(arch: RCNNArchitecture, in_channels: int, num_classes: int, fpn: bool) -> MaskHead:
    """FPN: 4 convs on 14x14 RoIs -> 28x28 masks; C4: only the upsampling on the box head's res5 feature."""
    convs = arch.mask_head_convs if fpn else 0
    head = MaskFeat(in_channels, arch.mask_head_channels, convs)
    return MaskHead(head, num_classes, RoIAlign(14, roi_scales(fpn)), share_bbox_feat=not fpn)


def post_process(arch: RCNNArchitecture) -> PostProcess:
    return PostProcess(arch.score_threshold, arch.nms_threshold, arch.keep_top_k, arch.mask_threshold)


def build_mask_rcnn(arch: RCNNArchitecture, num_classes: int, *, depth: int = 50, variant: str = "b",
                    groups: int = 1, base_width: int = 64, fpn: bool = True,
                    lr_mult_list: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> MaskRCNN:
    """Mask R-CNN with a ResNet / ResNet-vd / ResNeXt backbone, FPN or C4.

    Args:
        arch: the user knobs (widths, anchors, sampling, thresholds).
        num_classes: foreground classes.
        depth, variant ("b" or "d"), groups, base_width: the backbone's identity (ResNeXt: groups > 1).
        fpn: FPN neck with a TwoFCHead box head, else C4 (Res5Head in the RoI head).
        lr_mult_list: learning-rate multipliers of res2..res5.
    """
    backbone = build_backbone(arch, depth, variant, groups, base_width, fpn, lr_mult_list)
    neck: Optional[FPN] = None
    head: nn.Layer
    if fpn:
        neck = build_fpn(arch, backbone)
        feat_channels = neck.out_channels[0]
        head = TwoFCHead(feat_channels, arch.box_head_dim, 7)
        bbox_head = BBoxHead(head, arch.box_head_dim, num_classes, RoIAlign(7, roi_scales(fpn)),
                             roi_sampling(arch))
        mask_in = feat_channels
    else:
        feat_channels = backbone.out_channels[-1]
        head = Res5Head(depth=depth, base_channels=arch.base_channels, in_channels=feat_channels,
                        freeze_norm=arch.freeze_norm)
        bbox_head = BBoxHead(head, head.out_channels, num_classes, RoIAlign(14, roi_scales(fpn)),
                             roi_sampling(arch), with_pool=True)
        mask_in = head.out_channels
    return MaskRCNN(backbone, neck, build_rpn_head(arch, feat_channels, fpn, cascade=False), bbox_head,
                    build_mask_head(arch, mask_in, num_classes, fpn), post_process(arch), arch.draw_threshold)
