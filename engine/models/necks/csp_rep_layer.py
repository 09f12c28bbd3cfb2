"""The cross-stage-partial block with RepVGG bottlenecks that RT-DETR's hybrid encoder fuses levels with, and
its conv + BN (+ SiLU) unit.

Parameter names are an external contract: `conv1.conv.weight`, `conv1.bn._mean`,
`bottlenecks.0.conv2.bn.bias`, `conv3.conv.weight`, ... as in PaddleDetection's state_dict
(`neck.fpn_blocks.0.*` in ../shared/reference/params/Mask-RT-DETR-*.json).
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Uniform
from paddle.regularizer import L2Decay


class ConvBN(nn.Layer):
    """k x k conv ("same" padding, no bias) + BatchNorm (BN parameters without weight decay), then SiLU when
    `act`. The conv starts uniform in +-1/sqrt(fan_in) (PaddleDetection's BaseConv), or with Paddle's
    default He-normal init when `he_init` (its RepVGG branches): it matters when training from scratch."""

    def __init__(self, ch_in: int, ch_out: int, kernel: int, stride: int = 1, act: bool = True,
                 he_init: bool = False) -> None:
        super().__init__()
        self.act = act
        bound = 1.0 / math.sqrt(ch_in * kernel * kernel)
        init = None if he_init else ParamAttr(initializer=Uniform(-bound, bound))
        self.conv = nn.Conv2D(ch_in, ch_out, kernel, stride, padding=(kernel - 1) // 2, weight_attr=init,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(ch_out, weight_attr=ParamAttr(regularizer=L2Decay(0.0)),
                                 bias_attr=ParamAttr(regularizer=L2Decay(0.0)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(x))
        return F.silu(x) if self.act else x


class RepVggBlock(nn.Layer):
    """SiLU(BN(conv3x3(x)) + BN(conv1x1(x))): two parallel branches of the same width."""

    def __init__(self, ch_in: int, ch_out: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(ch_in, ch_out, 3, act=False, he_init=True)
        self.conv2 = ConvBN(ch_in, ch_out, 1, act=False, he_init=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.silu(self.conv1(x) + self.conv2(x))


class CSPRepLayer(nn.Layer):
    """Two 1x1 projections to `hidden = out_channels * expansion` channels, RepVGG blocks on the first, the
    sum, and a 1x1 conv to `out_channels` (the identity when hidden == out_channels, as for expansion 1.0).

    Args:
        in_channels, out_channels: [N, in_channels, H, W] -> [N, out_channels, H, W].
        num_blocks: RepVGG blocks (3 in RT-DETR).
        expansion: hidden width as a fraction of out_channels.
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 3,
                 expansion: float = 1.0) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvBN(in_channels, hidden, 1)
        self.conv2 = ConvBN(in_channels, hidden, 1)
        self.bottlenecks = nn.Sequential(*[RepVggBlock(hidden, hidden) for _ in range(num_blocks)])
        self.conv3 = ConvBN(hidden, out_channels, 1) if hidden != out_channels else nn.Identity()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))
