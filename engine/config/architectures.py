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


@dataclass
class PPYOLOESegArchitecture:
    """PP-YOLOE_seg knobs; defaults are PaddleDetection's ppyoloe_seg_s_80e_coco.

    Multipliers below the S values (e.g. 0.33 / 0.125) give a demo-sized model.
    """

    depth_mult: float = 0.33  # blocks per stage x this (rounded, >= 1)
    width_mult: float = 0.50  # channels x this (rounded); also the prototype branch width (256 x this)
    assigner_topk: int = 13  # task-aligned assignment: candidate anchors per object
    assigner_alpha: float = 1.0  # alignment = score^alpha * IoU^beta
    assigner_beta: float = 6.0
    score_threshold: float = 0.01  # post-processing: class scores above this enter NMS
    nms_top_k: int = 1000  # per image and class, candidates entering NMS
    nms_threshold: float = 0.7  # per-class NMS IoU
    keep_top_k: int = 300  # detections per image
    mask_threshold: float = 0.5  # mask probability > this is foreground
    draw_threshold: float = 0.5  # default prediction threshold


@dataclass
class MaskRTDETRArchitecture:
    """Mask-RT-DETR knobs; defaults are PaddleDetection's. The size (S..H) fixes the backbone arch, its
    learning-rate multiplier and the encoder's level, depth and expansion; `None` means "this size's
    value"."""

    backbone_width_mult: float = 1.0  # PPHGNetV2 widths x this (1.0 = published; e.g. 0.25 for demos)
    freeze_stem: bool = True  # the backbone stem is not trained
    freeze_norm: bool = True  # frozen BN (affine and statistics) in the backbone
    backbone_lr_mult: Optional[float] = None  # backbone LR x this; None: 0.1 (S, M), 0.05 (L), 0.01 (X, H)
    encoder_hidden_dim: Optional[int] = None  # hybrid encoder width; None: 256 (S, M, L), 384 (X), 512 (H)
    encoder_ffn_dim: Optional[int] = None  # encoder feed-forward width; None: 1024 (S, M, L), 2048 (X, H)
    mask_feat_channels: Optional[List[int]] = None  # [mask FPN, mask branch] widths; None: the size's
    num_prototypes: Optional[int] = None  # mask prototypes; None: 128 (L: 32)
    hidden_dim: int = 256  # decoder width
    num_queries: int = 300  # decoder queries
    num_decoder_layers: int = 6
    decoder_ffn_dim: int = 1024  # decoder feed-forward width
    num_decoder_points: int = 4  # deformable sampling points per head and level
    num_denoising: int = 100  # denoising queries in training (0 = off)
    label_noise_ratio: float = 0.5  # denoising: share of labels flipped
    box_noise_scale: float = 1.0  # denoising: box jitter scale
    num_sample_points: int = 12544  # mask points sampled per mask for the matcher and mask losses
    num_top_queries: int = 100  # detections per image
    mask_threshold: float = 0.5  # mask probability > this is foreground
    draw_threshold: float = 0.5  # default prediction threshold


FAMILY_ARCHITECTURES: Dict[str, Type] = {
    "rcnn": RCNNArchitecture,
    "solov2": SOLOv2Architecture,
    "ppyoloe_seg": PPYOLOESegArchitecture,
    "mask_rt_detr": MaskRTDETRArchitecture,
}
