"""SOLOv2 (https://arxiv.org/abs/2003.10152): ResNet + FPN, a category / kernel head over S x S grids and a
mask feature branch; each positive cell's predicted 1x1 kernel, applied to the mask features, is its
instance mask. No boxes in the network: a result's box is its mask's tight box.

Parameter names are an external contract: sublayers `backbone`, `neck`, `solov2_head`, `mask_head`
reproduce PaddleDetection's state_dict (../shared/reference/params/SOLOv2.json, aliases included).
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from ...config.architectures import SOLOv2Architecture
from ...errors import ConfigError
from ..backbones.resnet import ResNet
from ..heads.solov2_head import SOLOv2Head, points_nms
from ..heads.solov2_mask_head import SOLOv2MaskHead
from ..heads.solov2_post import SOLOv2PostProcess, candidates, masks_to_original, select
from ..losses.dice import dice_loss
from ..losses.focal import sigmoid_focal_loss
from ..necks.fpn import FPN
from ..ops.box_format import mask_extents
from ..ops.solov2_targets import SOLOv2Targets, cells_among_levels, levels_with_masks, solov2_targets
from .export_inputs import image_input_spec

Batch = Dict[str, Any]
MASK_LEVELS = 4  # the mask feature branch uses P2..P5


class SOLOv2(nn.Layer):
    """Backbone -> FPN (P2..P6) -> SOLOv2Head (category + kernels) and SOLOv2MaskHead (mask features).

    Args:
        backbone: ResNet returning res2..res5; neck: FPN with one extra level.
        solov2_head: SOLOv2Head; mask_head: SOLOv2MaskHead.
        arch: the loss, target and post-processing settings (SOLOv2Architecture).
    """

    PART_ORDER = ("backbone", "neck", "solov2_head", "mask_head")  # PaddleDetection's SOLOv2

    def __init__(self, backbone: nn.Layer, neck: nn.Layer, solov2_head: SOLOv2Head,
                 mask_head: SOLOv2MaskHead, arch: SOLOv2Architecture) -> None:
        super().__init__()
        parts = {"backbone": backbone, "neck": neck, "solov2_head": solov2_head, "mask_head": mask_head}
        for name in self.PART_ORDER:  # registration order = state_dict order
            setattr(self, name, parts[name])
        self.arch = arch
        self.post = SOLOv2PostProcess(arch.score_threshold, arch.mask_threshold, arch.update_threshold,
                                      arch.pre_nms_top_n, arch.post_nms_top_n, arch.nms_kernel,
                                      arch.nms_sigma)
        self.draw_threshold = arch.draw_threshold

    def _outputs(self, image: paddle.Tensor, kernel_levels: Optional[Sequence[int]] = None
                 ) -> Tuple[List[paddle.Tensor], List[Optional[paddle.Tensor]], paddle.Tensor]:
        feats = self.neck(self.backbone(image))
        cate_logits, kernels = self.solov2_head(feats, kernel_levels)
        return cate_logits, kernels, self.mask_head(feats[:MASK_LEVELS])

    def targets(self, batch: Batch) -> SOLOv2Targets:
        """The batch's targets (crowd regions dropped), see engine/models/ops/solov2_targets.py."""
        boxes, labels, masks = [], [], []
        for box, cls, mask, crowd in zip(batch["gt_bbox"], batch["gt_class"], batch["gt_mask"],
                                         batch["is_crowd"]):
            keep = _numpy(crowd).reshape(-1) == 0
            boxes.append(_numpy(box).reshape(-1, 4)[keep])
            labels.append(_numpy(cls).reshape(-1)[keep])
            masks.append(_numpy(mask)[keep])
        return solov2_targets(boxes, labels, masks, self.solov2_head.num_grids, self.arch.scale_ranges,
                              self.arch.coord_sigma)

    def loss(self, batch: Batch) -> Dict[str, paddle.Tensor]:
        """loss_ins (dice over positive cells' masks, x ins_loss_weight) and loss_cate (sigmoid focal over
        every cell, normalised by positives + 1), as PaddleDetection logs them."""
        targets = self.targets(batch)
        # kernels only where a mask loss needs them: the other levels' kernel branch is neither run nor
        # differentiated (the losses are the same)
        levels = levels_with_masks(targets, self.solov2_head.num_grids)
        cate_logits, kernels, mask_feat = self._outputs(batch["image"], levels)
        return self.loss_from_outputs(cate_logits, kernels, mask_feat, targets)

    def loss_from_outputs(self, cate_logits: List[paddle.Tensor], kernels: List[Optional[paddle.Tensor]],
                          mask_feat: paddle.Tensor, targets: SOLOv2Targets) -> Dict[str, paddle.Tensor]:
        """The losses of head outputs (training mode) against `targets`; a level's kernels may be None
        when no positive cell with a mask is on it (see `levels_with_masks`)."""
        num_classes = self.solov2_head.num_classes
        levels = [i for i, k in enumerate(kernels) if k is not None]
        kern = paddle.concat([kernels[i].flatten(2) for i in levels], axis=2)
        kern = kern.transpose([0, 2, 1])  # [N, cells of those levels, E]
        cells = paddle.to_tensor(cells_among_levels(targets.pos_cells, self.solov2_head.num_grids, levels))
        pos_kernels = paddle.take_along_axis(kern, cells.unsqueeze(2), axis=1, broadcast=True)  # [N, K, E]
        pos_logits = paddle.matmul(pos_kernels, mask_feat.flatten(2))  # [N, K, h * w]
        target = paddle.to_tensor(targets.pos_masks).astype("float32").flatten(2)
        weight = (target.sum(axis=2) > 0).astype("float32")
        dice = dice_loss(paddle.nn.functional.sigmoid(pos_logits), target)
        loss_ins = (dice * weight).sum() / weight.sum().clip(min=1.0) * self.arch.ins_loss_weight
        logits = paddle.concat([c.flatten(2) for c in cate_logits], axis=2).transpose([0, 2, 1])
        labels = paddle.to_tensor(targets.cate_labels).flatten()
        normalizer = paddle.to_tensor(float(targets.fg_num + 1))
        loss_cate = sigmoid_focal_loss(logits.reshape([-1, num_classes]), labels, normalizer,
                                       self.arch.focal_gamma, self.arch.focal_alpha)
        return {"loss_ins": loss_ins, "loss_cate": loss_cate}

    def predict(self, batch: Batch) -> Dict[str, paddle.Tensor]:
        """Instances of a batch (eval mode); see `forward`."""
        return self(batch["image"], batch["im_shape"], batch["scale_factor"])

    def forward(self, image: paddle.Tensor, im_shape: paddle.Tensor,
                scale_factor: paddle.Tensor) -> Dict[str, paddle.Tensor]:
        """Inference.

        Args:
            image: float32 [N, 3, H, W] normalised, padded (H, W multiples of 32); im_shape: float32 [N, 2]
            (h, w) resized size; scale_factor: float32 [N, 2] (h, w) resized / original.
        Returns:
            bbox float32 [K, 6] rows (class, score, x1, y1, x2, y2), the box the mask's tight box, in
            original pixels, images in order, score descending; bbox_num int32 [N]; mask uint8
            [K, Hm, Wm] 0/1 full-image masks, Hm x Wm the largest original size in the batch.
        """
        cate_logits, kernels, mask_feat = self._outputs(image)
        cate_probs = [points_nms(paddle.nn.functional.sigmoid(c)) for c in cate_logits]
        num_images = paddle.shape(image)[0]
        rows, logits = candidates(cate_probs, kernels, mask_feat, self.solov2_head.num_grids, self.post)
        rows, counts, probs = select(rows, logits, num_images, self.post)
        image_of = paddle.minimum(rows["image"], (num_images - 1).astype("int64"))
        original_size = paddle.floor(im_shape / scale_factor + 0.5)
        resized = paddle.gather(paddle.floor(im_shape), image_of)
        original = paddle.gather(original_size, image_of)
        h, w = paddle.shape(mask_feat)[2], paddle.shape(mask_feat)[3]
        probs = paddle.gather(probs, rows["slot"]).reshape([-1, h, w])
        masks = masks_to_original(probs, (h, w), resized, original, original_size.max(axis=0).astype("int32"),
                                  self.post.mask_threshold)
        bbox = paddle.concat([rows["label"].astype("float32").unsqueeze(1), rows["score"].unsqueeze(1),
                              mask_extents(masks)], axis=1)
        real = paddle.nonzero(paddle.logical_not(rows["placeholder"])).flatten()
        counts = paddle.gather(counts, paddle.arange(0, num_images, dtype="int64")).astype("int32")
        return {"bbox": paddle.gather(bbox, real), "bbox_num": counts, "mask": paddle.gather(masks, real)}

    def export_spec(self) -> Dict[str, paddle.static.InputSpec]:
        """Inputs of `forward`, in order, for `paddle.jit.to_static` (batch and image size dynamic)."""
        return image_input_spec()


def _numpy(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, paddle.Tensor) else np.asarray(x)


def build_solov2(arch: SOLOv2Architecture, num_classes: int, *, depth: int = 50) -> SOLOv2:
    """SOLOv2 with a ResNet-`depth` backbone and FPN; `arch` holds the user knobs."""
    if arch.kernel_out_channels < 1 or len(arch.scale_ranges) != len(arch.num_grids):
        raise ConfigError(f"Architecture.scale_ranges needs one [lower, upper] per grid level "
                          f"({len(arch.num_grids)}), got {len(arch.scale_ranges)}")
    backbone = ResNet(depth=depth, base_channels=arch.base_channels, return_idx=[0, 1, 2, 3], num_stages=4,
                      freeze_at=arch.freeze_at, freeze_norm=arch.freeze_norm)
    neck = FPN(in_channels=backbone.out_channels, out_channel=arch.fpn_channels,
               spatial_scales=[1.0 / s for s in backbone.out_strides])
    head = SOLOv2Head(num_classes, arch.fpn_channels, arch.head_channels, arch.stacked_convs, arch.num_grids,
                      arch.kernel_out_channels, arch.gn_groups)
    mask_head = SOLOv2MaskHead(arch.fpn_channels, arch.mask_mid_channels, arch.kernel_out_channels,
                               MASK_LEVELS, arch.gn_groups)
    return SOLOv2(backbone, neck, head, mask_head, arch)
