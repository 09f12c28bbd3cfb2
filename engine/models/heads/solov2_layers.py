"""Building blocks shared by SOLOv2's heads: conv + GroupNorm, CoordConv inputs, 2x bilinear upsampling.

Parameter names (`conv.weight`, `norm.weight`, `norm.bias`) are PaddleDetection's ConvNormLayer with
`norm_type: gn`.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Normal
from paddle.regularizer import L2Decay

from ...errors import ConfigError


class ConvGN(nn.Layer):
    """Conv (no bias, N(0, 0.01) init, "same" padding) + GroupNorm (no weight decay); no activation.

    Args:
        ch_in, ch_out, kernel: the convolution (stride 1).
        groups: GroupNorm groups; must divide ch_out.
    """

    def __init__(self, ch_in: int, ch_out: int, kernel: int, groups: int = 32) -> None:
        super().__init__()
        if ch_out % groups:
            raise ConfigError(f"Architecture.gn_groups ({groups}) must divide every head width; "
                              f"{ch_out} channels do not split into {groups} groups")
        self.conv = nn.Conv2D(ch_in, ch_out, kernel, padding=(kernel - 1) // 2,
                              weight_attr=ParamAttr(initializer=Normal(0.0, 0.01)), bias_attr=False)
        self.norm = nn.GroupNorm(groups, ch_out, weight_attr=ParamAttr(regularizer=L2Decay(0.0)),
                                 bias_attr=ParamAttr(regularizer=L2Decay(0.0)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.norm(self.conv(x))


def with_coords(x: paddle.Tensor) -> paddle.Tensor:
    """CoordConv input: [N, C, H, W] -> [N, C + 2, H, W], the two extra channels x then y, each running
    linearly from -1 (first column / row) to 1 (last)."""
    n, h, w = paddle.shape(x)[0], paddle.shape(x)[2], paddle.shape(x)[3]
    xs = paddle.linspace(-1.0, 1.0, w, dtype=x.dtype)
    ys = paddle.linspace(-1.0, 1.0, h, dtype=x.dtype)
    grid_y, grid_x = paddle.meshgrid(ys, xs)
    coords = paddle.stack([grid_x, grid_y]).unsqueeze(0).expand([n, 2, h, w])
    return paddle.concat([x, coords], axis=1)


def upsample2x_bilinear(x: paddle.Tensor) -> paddle.Tensor:
    """[N, C, H, W] -> [N, C, 2H, 2W]: F.interpolate(scale_factor=2, mode="bilinear", align_corners=False).

    Each output is 3/4 of its nearest input and 1/4 of the next nearest (edges repeated), which is a
    replicate-padded depthwise transposed convolution with the separable kernel [1, 3, 3, 1] / 4; traced
    graphs use that form, because Paddle Inference's oneDNN executor (Paddle 3.3.1) cannot run the
    interpolation's float scale attribute.
    """
    if paddle.in_dynamic_mode():
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False, align_mode=0)
    channels = x.shape[1]
    taps = paddle.to_tensor([0.25, 0.75, 0.75, 0.25], dtype=x.dtype)
    kernel = (taps.unsqueeze(1) * taps.unsqueeze(0)).reshape([1, 1, 4, 4]).expand([channels, 1, 4, 4])
    padded = F.pad(x, [1, 1, 1, 1], mode="replicate")
    out = F.conv2d_transpose(padded, kernel, stride=2, groups=channels)
    h, w = paddle.shape(x)[2], paddle.shape(x)[3]
    return out[:, :, 3:3 + 2 * h, 3:3 + 2 * w]
