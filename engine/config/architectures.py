"""Per-family `Architecture` sections: the user knobs of a model family (not its identity).

A model's identity (depth, vd variant, ResNeXt groups, FPN or C4, cascade) is fixed by its name in
`engine/models/zoo.py`; these sections hold what a user may tune: widths for small variants, anchors,
sampling, thresholds. `FAMILY_ARCHITECTURES` maps a family name to its section class.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Type


@dataclass
class RCNNArchitecture:
    """Mask R-CNN / Cascade Mask R-CNN knobs; defaults are PaddleDetection's.

    `None` means "this model's PaddleDetection value", which differs between FPN, C4 and Cascade.
    """

    base_channels: int = 64  # ResNet stem/stage width (64 = standard; 16 = demo-sized)
    fpn_channels: int = 256  # FPN output channels (also RPN and RoI feature width)
    freeze_at: int = 0  # freeze stem (0) .. stage k; -1 = nothing frozen
    freeze_norm: bool = True  # frozen BN affine params and statistics in the backbone
    anchor_sizes: List[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])  # FPN: one per P2..P6
    aspect_ratios: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # anchor h / w
    rpn_batch_size_per_im: int = 256  # anchors sampled per image for the RPN loss
    rpn_fg_fraction: float = 0.5  # at most this share of them foreground
    rpn_positive_overlap: float = 0.7  # anchor IoU >= this: foreground
    rpn_negative_overlap: float = 0.3  # anchor IoU < this: background
    rpn_nms_threshold: float = 0.7  # proposal NMS IoU
    rpn_pre_nms_top_n_train: Optional[int] = None  # None: FPN 2000 per level, C4 12000
    rpn_post_nms_top_n_train: Optional[int] = None  # None: FPN 1000, Cascade 2000, C4 2000
    rpn_pre_nms_top_n_test: Optional[int] = None  # None: FPN 1000 per level, C4 6000
    rpn_post_nms_top_n_test: int = 1000  # proposals per image at inference
    roi_batch_size_per_im: int = 512  # RoIs sampled per image for the box loss
    roi_fg_fraction: float = 0.25  # at most this share of them foreground
    roi_fg_threshold: float = 0.5  # RoI IoU >= this: foreground, else background
    cascade_iou: List[float] = field(default_factory=lambda: [0.5, 0.6, 0.7])  # Cascade: fg IoU per stage
    box_head_dim: int = 1024  # TwoFCHead hidden size (FPN models)
    mask_head_channels: int = 256  # mask head conv width
    mask_head_convs: int = 4  # 3x3 convs in the mask head (FPN models; C4 has none by design)
    score_threshold: float = 0.05  # post-processing: keep class scores above this before NMS
    nms_threshold: float = 0.5  # per-class NMS IoU
    keep_top_k: int = 100  # detections per image
    mask_threshold: float = 0.5  # pasted mask probability >= this is foreground
    draw_threshold: float = 0.5  # default prediction threshold


@dataclass
class SOLOv2Architecture:
    """SOLOv2 knobs; defaults are PaddleDetection's (solov2_r50_fpn_1x_coco)."""

    base_channels: int = 64  # ResNet stem/stage width (64 = standard; 16 = demo-sized)
    fpn_channels: int = 256  # FPN output channels (input width of both heads)
    freeze_at: int = 0  # freeze stem (0) .. stage k; -1 = nothing frozen
    freeze_norm: bool = True  # frozen BN affine params and statistics in the backbone
    head_channels: int = 512  # width of the category and kernel branches (seg_feat_channels)
    stacked_convs: int = 4  # 3x3 conv + GroupNorm + ReLU layers in each branch
    num_grids: List[int] = field(default_factory=lambda: [40, 36, 24, 16, 12])  # S x S cells, P2..P6
    scale_ranges: List[List[float]] = field(  # per level: [lower, upper] sqrt(box area) in resized pixels
        default_factory=lambda: [[1.0, 96.0], [48.0, 192.0], [96.0, 384.0], [192.0, 768.0], [384.0, 2048.0]])
    coord_sigma: float = 0.2  # centre region: this share of the box size around the mass centre
    mask_mid_channels: int = 128  # mask feature branch: per-level conv width
    kernel_out_channels: int = 256  # mask feature channels = length of each predicted 1x1 kernel
    gn_groups: int = 32  # GroupNorm groups (head, mask branch); must divide their widths
    ins_loss_weight: float = 3.0  # weight of the dice mask loss (loss_ins)
    focal_gamma: float = 2.0  # category focal loss (loss_cate) focusing parameter
    focal_alpha: float = 0.25  # category focal loss weight of positives
    score_threshold: float = 0.1  # post-processing: category scores above this become candidates
    mask_threshold: float = 0.5  # mask probability > this is foreground
    update_threshold: float = 0.05  # Matrix NMS: keep decayed scores >= this
    pre_nms_top_n: int = 500  # Matrix NMS input: best candidates per image
    post_nms_top_n: int = 100  # instances kept per image
    nms_kernel: str = "gaussian"  # Matrix NMS decay: gaussian or linear
    nms_sigma: float = 2.0  # gaussian decay: exp(-sigma * iou^2)
    draw_threshold: float = 0.5  # default prediction threshold


FAMILY_ARCHITECTURES: Dict[str, Type] = {
    "rcnn": RCNNArchitecture,
    "solov2": SOLOv2Architecture,
}
