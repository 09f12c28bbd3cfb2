"""SOLOv2's mask feature branch: one stride-4 feature map that every predicted kernel is applied to.

Parameter names are an external contract (../shared/reference/params/SOLOv2.json): level i's convs are
`conv_pre_feat{i}.mask_feat_head.convs_all_levels.{i}.conv{j}`, and the output conv is registered twice,
as `mask_feat_head.conv_pred.0` and as `conv_pred` (PaddleDetection's state_dict holds both names).
"""
from typing import List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .solov2_layers import ConvGN, upsample2x_bilinear, with_coords


class SOLOv2MaskHead(nn.Layer):
    """Per FPN level 0..L-1: level i goes through max(i, 1) conv + GN + ReLU layers, each but level 0's
    followed by a 2x bilinear upsampling, back to level 0's size; the coarsest level gets CoordConv
    inputs. The sum goes through a 1x1 conv + GN + ReLU.

    Args:
        in_channels: FPN width.
        mid_channels: width of the per-level convs.
        out_channels: mask feature channels (= the predicted kernels' length).
        num_levels: FPN levels used, finest first (PaddleDetection: 4, P2..P5).
        groups: GroupNorm groups.
    """

    def __init__(self, in_channels: int = 256, mid_channels: int = 128, out_channels: int = 256,
                 num_levels: int = 4, groups: int = 32) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.level_convs: List[List[ConvGN]] = []
        for i in range(num_levels):
            block = nn.Sequential()
            convs = []
            for j in range(max(i, 1)):
                ch_in = mid_channels if j else in_channels + (2 if i == num_levels - 1 and i else 0)
                conv = ConvGN(ch_in, mid_channels, 3, groups)
                block.add_sublayer(f"mask_feat_head.convs_all_levels.{i}.conv{j}", conv)
                convs.append(conv)
            self.add_sublayer(f"conv_pre_feat{i}", block)
            self.level_convs.append(convs)
        conv_pred = ConvGN(mid_channels, out_channels, 1, groups)
        # PaddleDetection registers this layer under both names, in this order
        self.add_sublayer("mask_feat_head.conv_pred.0", conv_pred)
        self.conv_pred = conv_pred
        self.out_channels = out_channels

    def forward(self, feats: Sequence[paddle.Tensor]) -> paddle.Tensor:
        """FPN levels [N, in_channels, H_i, W_i] (level i half the size of level i - 1) ->
        mask features float32 [N, out_channels, H_0, W_0]."""
        total = None
        for i, convs in enumerate(self.level_convs):
            x = feats[i]
            if i == self.num_levels - 1 and i:
                x = with_coords(x)
            for conv in convs:
                x = F.relu(conv(x))
                if i:
                    x = upsample2x_bilinear(x)
            total = x if total is None else total + x
        return F.relu(self.conv_pred(total))
