"""Feature Pyramid Network (https://arxiv.org/abs/1612.03144), as Mask R-CNN uses it: no norm, and one
extra level by subsampling the top output (PaddleDetection's `has_extra_convs: false`).

Parameter names are an external contract: they reproduce PaddleDetection's state_dict
(`fpn_inner_res2_sum_lateral`, ..., `fpn_inner_res5_sum`, `fpn_res2_sum` .. `fpn_res5_sum`;
see ../shared/reference/params/MaskRCNN-*-FPN.json).
"""
from typing import List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import XavierUniform

from ...errors import ConfigError


def upsample2x_nearest(x: paddle.Tensor) -> paddle.Tensor:
    """[N, C, H, W] -> [N, C, 2H, 2W], each value repeated 2x2: F.interpolate(scale_factor=2, mode="nearest")
    exactly. Eager code calls interpolate; a traced graph gets a depthwise 2x2 stride-2 transposed
    convolution with unit weights instead (the same values), because the oneDNN executor of Paddle 3.3.1
    (Paddle Inference) cannot run nearest_interp's float-list attribute, and runs expand slowly."""
    if paddle.in_dynamic_mode():
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    channels = x.shape[1]
    return F.conv2d_transpose(x, paddle.ones([channels, 1, 2, 2], dtype=x.dtype), stride=2, groups=channels)


class FPN(nn.Layer):
    """Top-down pathway over backbone stages ending at res5, plus `extra_levels` max-pooled levels.

    Args:
        in_channels: channels of the backbone outputs, finest first; the last one is res5 (up to 4
            inputs: res2..res5).
        out_channel: channels of every output level.
        spatial_scales: 1 / stride of each input (default res2..res5: 1/4 .. 1/32).
        extra_levels: 0 or 1 extra level (P6 = P5 subsampled by 2, a 1x1 stride-2 max pool).
    Attributes:
        out_channels, out_strides, spatial_scales: per output level, finest first.
    """

    def __init__(self, in_channels: Sequence[int], out_channel: int = 256,
                 spatial_scales: Optional[Sequence[float]] = None, extra_levels: int = 1) -> None:
        super().__init__()
        if not 1 <= len(in_channels) <= 4 or extra_levels not in (0, 1):
            raise ConfigError(f"FPN takes 1-4 input levels and 0 or 1 extra level, got {len(in_channels)} "
                              f"inputs and {extra_levels} extra")
        if spatial_scales is None:
            spatial_scales = [1.0 / s for s in (4, 8, 16, 32)][4 - len(in_channels):]
        scales = list(spatial_scales)
        for _ in range(extra_levels):
            scales.append(scales[-1] / 2.0)
        self.spatial_scales = scales
        self.extra_levels = extra_levels
        self.out_channels = [out_channel] * len(scales)
        self.out_strides = [int(round(1.0 / s)) for s in scales]
        # plain lists: each conv is registered once, under PaddleDetection's name
        self.lateral_convs: List[nn.Conv2D] = []
        self.fpn_convs: List[nn.Conv2D] = []
        first = 4 - len(in_channels)  # stage index of the first input: 0 = res2 .. 3 = res5
        fan = out_channel * 3 * 3
        for i, ch in enumerate(in_channels, start=first):
            name = "fpn_inner_res5_sum" if i == 3 else f"fpn_inner_res{i + 2}_sum_lateral"
            lateral = nn.Conv2D(ch, out_channel, 1,
                                weight_attr=ParamAttr(initializer=XavierUniform(fan_out=ch)))
            self.add_sublayer(name, lateral)
            self.lateral_convs.append(lateral)
            output = nn.Conv2D(out_channel, out_channel, 3, padding=1,
                               weight_attr=ParamAttr(initializer=XavierUniform(fan_out=fan)))
            self.add_sublayer(f"fpn_res{i + 2}_sum", output)
            self.fpn_convs.append(output)

    def forward(self, feats: Sequence[paddle.Tensor]) -> List[paddle.Tensor]:
        """Backbone stages [N, in_channels[i], H_i, W_i] (each twice the size of the next: pad inputs to a
        multiple of the coarsest stride) -> levels [N, out_channel, H_i, W_i], then the extra level."""
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for lvl in range(len(laterals) - 1, 0, -1):
            upsampled = upsample2x_nearest(laterals[lvl])
            laterals[lvl - 1] = laterals[lvl - 1] + upsampled
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        if self.extra_levels:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return outs
