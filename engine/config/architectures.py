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
class MaskRTDETRArchitecture:
    """Mask-RT-DETR knobs; defaults are PaddleDetection's. The size (S..H) fixes the backbone arch, its
    learning-rate multiplier and the encoder's level, depth and expansion; `None` means "this size's
    value"."""

    backbone_width_mult: float = 1.0  # PPHGNetV2 widths x this (1.0 = published; e.g. 0.25 for demos)
    freeze_stem: bool = True  # the backbone stem is not trained
    freeze_norm: bool = True  # frozen BN (affine and statistics) in the backbone
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
    "mask_rt_detr": MaskRTDETRArchitecture,
}
