"""Cascade Mask R-CNN (https://arxiv.org/abs/1906.09756): Mask R-CNN with a three-stage cascade box head.

Parameter names are an external contract: they reproduce PaddleDetection's CascadeRCNN state_dict
(../shared/reference/params/Cascade-MaskRCNN-*.json).
"""
from typing import Sequence

from ...config.architectures import RCNNArchitecture
from ...errors import ConfigError
from ..heads.cascade_head import STAGE_BOX_WEIGHTS, CascadeHead, CascadeTwoFCHead
from ..ops.roi_align import RoIAlign
from .mask_rcnn import (MaskRCNN, build_backbone, build_fpn, build_mask_head, build_rpn_head,
                        post_process, roi_sampling, roi_scales)


class CascadeMaskRCNN(MaskRCNN):
    """Mask R-CNN whose `bbox_head` is a CascadeHead: the box stages refine the proposals in turn, the
    mask head trains on the stage-0 sample and predicts on the final detections. Losses hold
    `loss_bbox_cls_stage{i}` / `loss_bbox_reg_stage{i}` instead of the single-stage box losses."""

    PART_ORDER = ("backbone", "rpn_head", "bbox_head", "neck", "mask_head")  # PaddleDetection's CascadeRCNN


def build_cascade_mask_rcnn(arch: RCNNArchitecture, num_classes: int, *, depth: int = 50, variant: str = "b",
                            groups: int = 1, base_width: int = 64,
                            lr_mult_list: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> CascadeMaskRCNN:
    """Cascade Mask R-CNN with a ResNet / ResNet-vd backbone and FPN (arguments as `build_mask_rcnn`)."""
    if not 1 <= len(arch.cascade_iou) <= len(STAGE_BOX_WEIGHTS):
        raise ConfigError(f"Architecture.cascade_iou needs 1 to {len(STAGE_BOX_WEIGHTS)} stage thresholds, "
                          f"got {list(arch.cascade_iou)}")
    backbone = build_backbone(arch, depth, variant, groups, base_width, True, lr_mult_list)
    neck = build_fpn(arch, backbone)
    channels = neck.out_channels[0]
    head = CascadeTwoFCHead(channels, arch.box_head_dim, 7, num_stages=len(arch.cascade_iou))
    bbox_head = CascadeHead(head, arch.box_head_dim, num_classes, RoIAlign(7, roi_scales(True)),
                            roi_sampling(arch), stage_iou=arch.cascade_iou,
                            stage_loss_weights=[1.0 / len(arch.cascade_iou)] * len(arch.cascade_iou))
    return CascadeMaskRCNN(backbone, neck, build_rpn_head(arch, channels, True, cascade=True), bbox_head,
                           build_mask_head(arch, channels, num_classes, True), post_process(arch),
                           arch.draw_threshold)
