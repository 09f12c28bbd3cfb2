"""Per-family `Architecture` sections: the user knobs of a model family (not its identity).

A model's identity (depth, vd variant, ResNeXt groups, FPN or C4, cascade) is fixed by its name in
`engine/models/zoo.py`; these sections hold what a user may tune: widths for small variants, anchors,
sampling, thresholds. `FAMILY_ARCHITECTURES` maps a family name to its section class.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Type


@dataclass
class RCNNArchitecture:
    """Mask R-CNN / Cascade Mask R-CNN knobs; defaults are PaddleDetection's."""

    base_channels: int = 64  # ResNet stem/stage width (64 = standard; 16 = demo-sized)
    fpn_channels: int = 256  # FPN output channels (also RPN and RoI feature width)
    freeze_at: int = 0  # freeze stem (0) .. stage k; -1 = nothing frozen
    freeze_norm: bool = True  # frozen BN affine params and statistics in the backbone
    anchor_sizes: List[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    aspect_ratios: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    rpn_batch_size_per_im: int = 256
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 1000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    roi_batch_size_per_im: int = 512
    roi_fg_fraction: float = 0.25
    box_head_dim: int = 1024  # TwoFCHead hidden size
    mask_head_channels: int = 256
    mask_head_convs: int = 4
    score_threshold: float = 0.05  # post-processing: keep boxes above this before NMS
    nms_threshold: float = 0.5
    keep_top_k: int = 100  # detections per image
    draw_threshold: float = 0.5  # default prediction threshold


FAMILY_ARCHITECTURES: Dict[str, Type] = {
    "rcnn": RCNNArchitecture,
}
