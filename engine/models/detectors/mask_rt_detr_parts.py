"""What each Mask-RT-DETR size (S, M, L, X, H) fixes, and the backbone + hybrid encoder built from it.

Values are PaddleDetection's configs/mask_rtdetr/mask_rtdetr_hgnetv2_<size>_6x_coco.yml (= PaddleX's
Mask-RT-DETR-<size>.yaml); `MaskRTDETRArchitecture` may override the widths for demo-sized models.
"""
from typing import NamedTuple, Optional, Tuple

from ...config.architectures import MaskRTDETRArchitecture
from ...errors import ConfigError
from ..backbones.hgnetv2 import PPHGNetV2
from ..necks.mask_hybrid_encoder import EncoderLayerConfig, MaskHybridEncoder


class SizeSpec(NamedTuple):
    backbone_lr: float  # learning-rate multiplier of the backbone stages (and of the stem unless frozen)
    encoder_hidden_dim: int
    encoder_idx: int  # the backbone level (0 = stride 4 .. 3 = stride 32) that gets self-attention
    encoder_layers: int
    encoder_ffn_dim: int
    expansion: float  # CSPRepLayer hidden width / encoder width
    mask_feat_channels: Tuple[int, int]
    num_prototypes: int


SIZES = {
    "S": SizeSpec(0.1, 256, 2, 1, 1024, 0.5, (64, 32), 128),
    "M": SizeSpec(0.1, 256, 2, 1, 1024, 0.5, (64, 64), 128),
    "L": SizeSpec(0.05, 256, 3, 1, 1024, 1.0, (64, 64), 32),
    "X": SizeSpec(0.01, 384, 3, 1, 2048, 1.0, (128, 128), 128),
    "H": SizeSpec(0.01, 512, 3, 2, 2048, 1.0, (256, 128), 128),
}


def build_backbone_and_neck(size: str, arch: Optional[MaskRTDETRArchitecture] = None
                            ) -> Tuple[PPHGNetV2, MaskHybridEncoder]:
    """PPHGNetV2-<size> (all four stages returned) and its MaskHybridEncoder.

    `neck(backbone(image))` gives (three fused levels at strides 8, 16, 32, mask prototypes at stride 4);
    `neck.out_channels` and `neck.num_prototypes` size the decoder.

    Raises:
        ConfigError: an unknown size, or an Architecture width that cannot work (named by its key).
    """
    if size not in SIZES:
        raise ConfigError(f"Mask-RT-DETR size must be one of {', '.join(SIZES)}, got {size!r}")
    arch = arch or MaskRTDETRArchitecture()
    _check_widths(arch)
    spec = SIZES[size]
    backbone_lr = spec.backbone_lr if arch.backbone_lr_mult is None else arch.backbone_lr_mult
    stem_lr = 0.0 if arch.freeze_stem else backbone_lr
    backbone = PPHGNetV2(size, lr_mult_list=(stem_lr,) + (backbone_lr,) * 4,
                         freeze_stem=arch.freeze_stem, freeze_norm=arch.freeze_norm,
                         width_mult=arch.backbone_width_mult)
    hidden = arch.encoder_hidden_dim or spec.encoder_hidden_dim
    encoder = EncoderLayerConfig(num_layers=spec.encoder_layers, num_heads=8,
                                 dim_feedforward=arch.encoder_ffn_dim or spec.encoder_ffn_dim)
    mask_channels = tuple(arch.mask_feat_channels or spec.mask_feat_channels)
    neck = MaskHybridEncoder(backbone.out_channels, backbone.out_strides, hidden_dim=hidden,
                             encoder_idx=(spec.encoder_idx,), encoder=encoder,
                             num_prototypes=arch.num_prototypes or spec.num_prototypes,
                             expansion=spec.expansion, mask_feat_channels=mask_channels)
    return backbone, neck


def _check_widths(arch: MaskRTDETRArchitecture) -> None:
    """The width knobs, checked here so that errors name the Architecture key."""
    problems = []
    if not 0.0 < arch.backbone_width_mult <= 1.0:
        problems.append(f"backbone_width_mult must be in (0, 1], got {arch.backbone_width_mult}")
    if arch.encoder_hidden_dim is not None and (arch.encoder_hidden_dim <= 0 or arch.encoder_hidden_dim % 8):
        problems.append(f"encoder_hidden_dim must be a positive multiple of 8 (8 attention heads, a 4-part "
                        f"position embedding), got {arch.encoder_hidden_dim}")
    if arch.backbone_lr_mult is not None and arch.backbone_lr_mult < 0:
        problems.append(f"backbone_lr_mult must be >= 0, got {arch.backbone_lr_mult}")
    for key in ("encoder_ffn_dim", "num_prototypes"):
        value = getattr(arch, key)
        if value is not None and value <= 0:
            problems.append(f"{key} must be positive, got {value}")
    channels = arch.mask_feat_channels
    if channels is not None and (len(channels) != 2 or min(channels) <= 0):
        problems.append(f"mask_feat_channels must be 2 positive widths [mask FPN, mask branch], "
                        f"got {list(channels)}")
    if problems:
        raise ConfigError("Architecture: " + "; ".join(problems))
