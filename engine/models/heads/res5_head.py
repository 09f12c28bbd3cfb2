"""Res5 RoI feature extractor of the C4 Mask R-CNN: the backbone's res5 stage run on 14x14 RoI features.

Parameter names are an external contract: they reproduce PaddleDetection's state_dict
(`bbox_head.head.res5.res5a.branch2a.conv.weight`, ...;
see ../shared/reference/params/MaskRCNN-ResNet50.json).
"""
from typing import Optional

import paddle
import paddle.nn as nn

from ...errors import ConfigError
from ..backbones.resnet import BasicBlock, BottleNeck, ResStage


class Res5Head(nn.Layer):
    """res5 (3 blocks, the first with stride 2) as a box head: [R, C4, 14, 14] -> [R, out_channels, 7, 7].

    As in PaddleDetection it is always variant b with frozen BN (its statistics come from the pretrained
    backbone), and its convs train at the base learning rate.

    Args:
        depth: the backbone's depth (BottleNeck for >= 50, BasicBlock below).
        base_channels: the backbone's width knob (64 = standard: in 1024, out 2048 channels).
        in_channels: channels of the RoI features (default: the matching backbone's res4 output).
        freeze_norm: frozen BN (PaddleDetection: always).
    Attributes:
        out_channels: channels of the output.
    """

    def __init__(self, depth: int = 50, base_channels: int = 64, in_channels: Optional[int] = None,
                 freeze_norm: bool = True) -> None:
        super().__init__()
        if depth < 18:
            raise ConfigError(f"Res5Head needs a ResNet depth (18..152), got {depth}")
        block = BottleNeck if depth >= 50 else BasicBlock
        if in_channels is None:
            in_channels = base_channels * 4 * block.expansion
        self.res5 = ResStage(block, in_channels, base_channels * 8, 3, stage_num=5, freeze_norm=freeze_norm)
        self.out_channels = self.res5.out_channels

    def forward(self, roi_feats: paddle.Tensor) -> paddle.Tensor:
        """float32 [R, in_channels, S, S] -> float32 [R, out_channels, ceil(S / 2), ceil(S / 2)]."""
        return self.res5(roi_feats)
