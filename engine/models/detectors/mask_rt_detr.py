"""Mask-RT-DETR (PaddleDetection's real-time DETR with a Mask DINO mask head): PPHGNetV2 -> hybrid
encoder with a mask prototype branch -> deformable decoder with mask-enhanced query selection.

Parameter names are an external contract: sublayers `backbone`, `transformer`, `neck` (registered in
this order) reproduce PaddleDetection's DETR state_dict (../shared/reference/params/Mask-RT-DETR-*.json).
"""
from typing import Any, Dict, List

import paddle
import paddle.nn as nn

from ...config.architectures import MaskRTDETRArchitecture
from ..heads.mask_rtdetr_transformer import DecoderConfig, MaskRTDETRTransformer
from ..losses.mask_dino_loss import MaskDINOLoss, Targets
from ..ops.box_format import xyxy_to_cxcywh
from ..ops.detr_postprocess import top_query_detections
from ..ops.hungarian_matcher import HungarianMatcher
from .mask_rt_detr_parts import build_backbone_and_neck
from .export_inputs import image_input_spec

Batch = Dict[str, Any]


class MaskRTDETR(nn.Layer):
    """Args:
        backbone: image [N, 3, H, W] -> list of 4 maps (strides 4 .. 32).
        neck: that list -> (3 fused maps at strides 8, 16, 32, mask prototypes [N, P, H/4, W/4]).
        transformer: MaskRTDETRTransformer.
        criterion: the training loss.
        num_top_queries: detections per image; mask_threshold: mask binarisation (probability).
        draw_threshold: default score threshold of predictions shown to users.
    """

    def __init__(self, backbone: nn.Layer, neck: nn.Layer, transformer: MaskRTDETRTransformer,
                 criterion: MaskDINOLoss, num_top_queries: int = 100, mask_threshold: float = 0.5,
                 draw_threshold: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone  # registration order = PaddleDetection's state_dict order
        self.transformer = transformer
        self.neck = neck
        self.criterion = criterion
        self.num_top_queries, self.mask_threshold = num_top_queries, mask_threshold
        self.draw_threshold = draw_threshold

    def loss(self, batch: Batch) -> Dict[str, paddle.Tensor]:
        """loss_{class,bbox,giou,mask,dice}, their `_aux` sums over the other prediction sets, and the
        `_dn` (denoising) versions of all ten."""
        targets = detr_targets(batch)
        feats, mask_feat = self.neck(self.backbone(batch["image"]))
        out = self.transformer(feats, mask_feat, (targets.classes, targets.boxes))
        return {name: value.reshape([]) for name, value in self.criterion(out, targets).items()}

    def predict(self, batch: Batch) -> Dict[str, paddle.Tensor]:
        """Detections of a batch (eval mode); see `forward`."""
        return self(batch["image"], batch["im_shape"], batch["scale_factor"])

    def forward(self, image: paddle.Tensor, im_shape: paddle.Tensor,
                scale_factor: paddle.Tensor) -> Dict[str, paddle.Tensor]:
        """Inference.

        Args:
            image: float32 [N, 3, H, W] normalised (H, W multiples of 32); im_shape: float32 [N, 2] (h, w)
                resized size; scale_factor: float32 [N, 2] (h, w) resized / original.
        Returns:
            bbox float32 [N * k, 6] rows (class, score, x1, y1, x2, y2) in original pixels, k =
            num_top_queries per image, best first; bbox_num int32 [N] (all k); mask uint8 [N * k, Hm, Wm]
            0/1, Hm x Wm the largest original size in the batch (crop each to its image's size).
        """
        feats, mask_feat = self.neck(self.backbone(image))
        out = self.transformer(feats, mask_feat).decoder
        return top_query_detections(out.logits[-1], out.boxes[-1], out.masks[-1], im_shape, scale_factor,
                                    paddle.shape(image)[2:4], self.num_top_queries, self.mask_threshold)

    def export_spec(self) -> Dict[str, paddle.static.InputSpec]:
        """Inputs of `forward`, in order, for `paddle.jit.to_static` (batch and image size dynamic)."""
        return image_input_spec()


def detr_targets(batch: Batch) -> Targets:
    """Per-image targets without crowd regions: boxes as (cx, cy, w, h) / padded image size, masks float."""
    height, width = batch["image"].shape[2:]
    scale = paddle.to_tensor([width, height, width, height], dtype="float32")
    classes: List[paddle.Tensor] = []
    boxes: List[paddle.Tensor] = []
    masks: List[paddle.Tensor] = []
    fields = zip(batch["gt_bbox"], batch["gt_class"], batch["gt_mask"], batch["is_crowd"])
    for box, cls, mask, crowd in fields:
        keep = paddle.nonzero(crowd.flatten() == 0).flatten()
        boxes.append(xyxy_to_cxcywh(paddle.gather(box.reshape([-1, 4]).astype("float32"), keep) / scale))
        classes.append(paddle.gather(cls.flatten().astype("int64"), keep))
        masks.append(paddle.gather(mask, keep).astype("float32"))
    return Targets(classes, boxes, masks)


def decoder_config(arch: MaskRTDETRArchitecture) -> DecoderConfig:
    return DecoderConfig(hidden_dim=arch.hidden_dim, num_queries=arch.num_queries, num_heads=8,
                         num_layers=arch.num_decoder_layers, ffn_dim=arch.decoder_ffn_dim,
                         num_points=arch.num_decoder_points, num_denoising=arch.num_denoising,
                         label_noise_ratio=arch.label_noise_ratio, box_noise_scale=arch.box_noise_scale)


def build_mask_rt_detr(arch: MaskRTDETRArchitecture, num_classes: int, *, size: str = "S") -> MaskRTDETR:
    """Mask-RT-DETR-<size> (S, M, L, X, H) with `num_classes` foreground classes."""
    backbone, neck = build_backbone_and_neck(size, arch)
    transformer = MaskRTDETRTransformer(num_classes, neck.out_channels, neck.num_prototypes,
                                        decoder_config(arch))
    matcher = HungarianMatcher(num_sample_points=arch.num_sample_points)
    criterion = MaskDINOLoss(num_classes, matcher, num_sample_points=arch.num_sample_points)
    return MaskRTDETR(backbone, neck, transformer, criterion, arch.num_top_queries, arch.mask_threshold,
                      arch.draw_threshold)
