"""PP-YOLOE_seg (PP-YOLOE, https://arxiv.org/abs/2203.16250, with YOLACT-style prototype masks):
CSPResNet -> CustomCSPPAN -> PPYOLOEInsHead; task-aligned assignment; multi-class NMS; mask assembly.

Parameter names are an external contract: sublayers `backbone`, `neck`, `yolo_head` reproduce
PaddleDetection's PPYOLOE state_dict (../shared/reference/params/PP-YOLOE_seg-S.json).
"""
from dataclasses import dataclass
from typing import Any, Dict

import paddle
import paddle.nn as nn

from ...config.architectures import PPYOLOESegArchitecture
from ..backbones.cspresnet import CSPResNet
from ..heads.ppyoloe_ins_head import PPYOLOEInsHead
from ..heads.ppyoloe_loss import LossWeights, pad_targets, ppyoloe_seg_loss
from ..heads.ppyoloe_masks import assemble_masks
from ..necks.custom_csp_pan import CustomCSPPAN
from ..ops.nms import drop_sentinel, multiclass_nms
from ..ops.task_aligned_assigner import TaskAlignedAssigner
from .export_inputs import image_input_spec

Batch = Dict[str, Any]


@dataclass
class PostProcess:
    """PaddleDetection's MultiClassNMS settings for PP-YOLOE_seg plus the mask binarisation."""

    score_threshold: float = 0.01  # class scores at or below this are dropped before NMS
    nms_top_k: int = 1000  # per image and class, the best this many candidates enter NMS
    nms_threshold: float = 0.7
    keep_top_k: int = 300  # detections per image
    mask_threshold: float = 0.5  # resampled mask probability > this is foreground


class PPYOLOESeg(nn.Layer):
    """Args:
        backbone: CSPResNet returning strides 8, 16, 32; neck: CustomCSPPAN; yolo_head: PPYOLOEInsHead.
        assigner: task-aligned assigner for training; post: post-processing; loss_weights: loss weights.
        draw_threshold: default score threshold of predictions shown to users.
    """

    def __init__(self, backbone: CSPResNet, neck: CustomCSPPAN, yolo_head: PPYOLOEInsHead,
                 assigner: TaskAlignedAssigner, post: PostProcess, loss_weights: LossWeights = LossWeights(),
                 draw_threshold: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.yolo_head = yolo_head
        self.assigner = assigner
        self.post = post
        self.loss_weights = loss_weights
        self.draw_threshold = draw_threshold

    def loss(self, batch: Batch) -> Dict[str, paddle.Tensor]:
        """Weighted training losses loss_cls, loss_iou, loss_dfl, loss_mask (PaddleDetection's names; the
        values already carry the loss weights 1, 2.5, 0.5, 2.5, so their sum is PaddleDetection's `loss`)."""
        image = batch["image"]
        out = self.yolo_head(self.neck(self.backbone(image)))
        return ppyoloe_seg_loss(self.yolo_head, out, pad_targets(batch), self.assigner,
                                (int(image.shape[2]), int(image.shape[3])), self.loss_weights)

    def predict(self, batch: Batch) -> Dict[str, paddle.Tensor]:
        """Detections of a batch (eval mode); see `forward`."""
        return self(batch["image"], batch["im_shape"], batch["scale_factor"])

    def forward(self, image: paddle.Tensor, im_shape: paddle.Tensor,
                scale_factor: paddle.Tensor) -> Dict[str, paddle.Tensor]:
        """Inference.

        Args:
            image: float32 [N, 3, H, W] (H, W multiples of 32); im_shape: float32 [N, 2] (h, w) resized size;
            scale_factor: float32 [N, 2] (h, w) resized / original.
        Returns:
            bbox float32 [K, 6] rows (class, score, x1, y1, x2, y2) in original pixels (not clipped, as
            PaddleDetection), images in order; bbox_num int32 [N]; mask uint8 [K, Hm, Wm] full-image masks,
            Hm x Wm the largest original size in the batch.
        """
        head = self.yolo_head
        feats = self.neck(self.backbone(image))
        out = head(feats, with_protos=False)
        boxes = head.decode_boxes(out) * out.strides  # [N, L, 4] input pixels
        num_anchors = paddle.shape(out.scores)[1]
        p = self.post
        probs = _per_class_top_k(out.scores, p.nms_top_k, p.score_threshold)
        rows_per_image = paddle.ones_like(scale_factor[:, 0]).astype("int64") * num_anchors
        dets, det_num, rows = multiclass_nms(boxes.reshape([-1, 1, 4]), probs.reshape([-1, head.num_classes]),
                                             rows_per_image, p.score_threshold, p.nms_threshold, p.keep_top_k,
                                             sentinel=True, return_rows=True)
        image_of = rows // num_anchors
        scale = paddle.gather(scale_factor, image_of)
        original_size = paddle.floor(im_shape / scale_factor + 0.5)
        max_size = original_size.max(axis=0).astype("int32")
        if paddle.in_dynamic_mode() and not bool((dets[:, 1] >= 0).any()):
            # only multiclass_nms's placeholder: its mask is dropped below, so the prototypes are skipped
            masks = paddle.zeros([dets.shape[0], int(max_size[0]), int(max_size[1])], "uint8")
        else:
            coeffs = paddle.gather(out.coeffs.reshape([-1, head.num_masks]), rows)
            net_shape = paddle.shape(image)[2:].astype("float32")
            masks = assemble_masks(head.prototypes(feats), coeffs, image_of, dets[:, 2:], net_shape, scale,
                                   paddle.gather(original_size, image_of), max_size[0], max_size[1],
                                   p.mask_threshold)
        original_boxes = dets[:, 2:] / paddle.concat([scale[:, 1:2], scale[:, 0:1]] * 2, axis=1)
        bbox = paddle.concat([dets[:, :2], original_boxes], axis=1)
        bbox, det_num, masks = drop_sentinel(bbox, det_num, masks)
        return {"bbox": bbox, "bbox_num": det_num, "mask": masks}

    def export_spec(self) -> Dict[str, paddle.static.InputSpec]:
        """Inputs of `forward`, in order, for `paddle.jit.to_static` (batch and image size dynamic)."""
        return image_input_spec()


def _per_class_top_k(scores: paddle.Tensor, k: int, score_threshold: float) -> paddle.Tensor:
    """scores [N, L, C] with everything below each (image, class)'s k-th best set to 0 (NMS's nms_top_k).

    Zero columns are appended first so that k never exceeds the anchor count, whatever the input size.
    Eagerly, when no (image, class) has more than k scores above `score_threshold` (>= 0), the scores are
    returned as they are: the cut would only zero scores that NMS drops anyway.
    """
    if paddle.in_dynamic_mode() and score_threshold >= 0 \
            and int((scores > score_threshold).astype("int32").sum(axis=1).max()) <= k:
        return scores
    by_class = scores.transpose([0, 2, 1])
    # tile, not expand: oneDNN's expand kernel misreads -1 sizes in exported graphs
    padded = paddle.concat([by_class, paddle.zeros_like(by_class[:, :, :1]).tile([1, 1, k])], axis=-1)
    kth = paddle.topk(padded, k, axis=-1)[0][:, :, k - 1:]
    return paddle.where(by_class >= kth, by_class, paddle.zeros_like(by_class)).transpose([0, 2, 1])


def build_ppyoloe_seg(arch: PPYOLOESegArchitecture, num_classes: int) -> PPYOLOESeg:
    """PP-YOLOE_seg at `arch.depth_mult` / `arch.width_mult` (0.33 / 0.50 = the S model)."""
    backbone = CSPResNet(layers=(3, 6, 6, 3), channels=(64, 128, 256, 512, 1024), return_idx=(1, 2, 3),
                         use_large_stem=True, use_alpha=True, width_mult=arch.width_mult,
                         depth_mult=arch.depth_mult)
    neck = CustomCSPPAN(backbone.out_channels, out_channels=(768, 384, 192), stage_num=1, block_num=3,
                        spp=True, width_mult=arch.width_mult, depth_mult=arch.depth_mult)
    head = PPYOLOEInsHead(neck.out_channels, num_classes, fpn_strides=(32, 16, 8), reg_max=16, num_masks=32,
                          num_protos=int(256 * arch.width_mult))
    assigner = TaskAlignedAssigner(topk=arch.assigner_topk, alpha=arch.assigner_alpha,
                                   beta=arch.assigner_beta)
    post = PostProcess(arch.score_threshold, arch.nms_top_k, arch.nms_threshold, arch.keep_top_k,
                       arch.mask_threshold)
    return PPYOLOESeg(backbone, neck, head, assigner, post, draw_threshold=arch.draw_threshold)
