"""CSPResNet (PP-YOLOE's backbone, https://arxiv.org/abs/2203.16250) and its conv building blocks.

Parameter names follow PaddleDetection's state_dict (`stem.conv1.conv.weight`,
`stages.0.blocks.0.conv2.alpha`, ...); ../shared/reference/params/PP-YOLOE_seg-S.json lists them.
`ConvBN`, `BasicBlock` are shared with the CustomCSPPAN neck and the PP-YOLOE heads.
"""
from typing import List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.regularizer import L2Decay


def swish(x: paddle.Tensor) -> paddle.Tensor:
    """x * sigmoid(x) (PaddleDetection's 'swish' / 'silu')."""
    return F.swish(x)


def _bn(channels: int) -> nn.BatchNorm2D:
    # BN affine parameters are not weight-decayed (PaddleDetection's choice for these models)
    return nn.BatchNorm2D(channels, weight_attr=ParamAttr(regularizer=L2Decay(0.0)),
                          bias_attr=ParamAttr(regularizer=L2Decay(0.0)))


class ConvBN(nn.Layer):
    """Conv (no bias) -> BN -> optional activation; 'same' padding for odd kernels."""

    def __init__(self, ch_in: int, ch_out: int, kernel: int = 3, stride: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2D(ch_in, ch_out, kernel, stride=stride, padding=kernel // 2, bias_attr=False)
        self.bn = _bn(ch_out)
        self.act = act

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(x))
        return swish(x) if self.act else x


class RepVggBlock(nn.Layer):
    """act(conv3x3-BN(x) + alpha * conv1x1-BN(x)); `alpha` a learnt scalar when `use_alpha`."""

    def __init__(self, ch_in: int, ch_out: int, use_alpha: bool = False) -> None:
        super().__init__()
        self.conv1 = ConvBN(ch_in, ch_out, 3, act=False)
        self.conv2 = ConvBN(ch_in, ch_out, 1, act=False)
        if use_alpha:
            self.alpha = self.create_parameter([1], dtype="float32",
                                               default_initializer=nn.initializer.Constant(1.0))
        else:
            self.alpha = None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        side = self.conv2(x)
        if self.alpha is not None:
            side = self.alpha * side
        return swish(self.conv1(x) + side)


class BasicBlock(nn.Layer):
    """ConvBN 3x3 -> RepVggBlock, with an identity shortcut when `shortcut` (channels unchanged)."""

    def __init__(self, channels: int, shortcut: bool = True, use_alpha: bool = False) -> None:
        super().__init__()
        self.conv1 = ConvBN(channels, channels, 3)
        self.conv2 = RepVggBlock(channels, channels, use_alpha=use_alpha)
        self.shortcut = shortcut

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class EffectiveSE(nn.Layer):
    """Channel attention: x * hardsigmoid(fc(mean over H, W))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2D(channels, channels, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * F.hardsigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class CSPResStage(nn.Layer):
    """Stride-2 conv, then two 1x1 branches (one through `n` BasicBlocks), concat, ESE, 1x1 conv."""

    def __init__(self, ch_in: int, ch_out: int, n: int, use_alpha: bool) -> None:
        super().__init__()
        mid = (ch_in + ch_out) // 2
        self.conv_down = ConvBN(ch_in, mid, 3, stride=2)
        self.conv1 = ConvBN(mid, mid // 2, 1)
        self.conv2 = ConvBN(mid, mid // 2, 1)
        self.blocks = nn.Sequential(*[BasicBlock(mid // 2, use_alpha=use_alpha) for _ in range(n)])
        self.attn = EffectiveSE(mid)
        self.conv3 = ConvBN(mid, ch_out, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv_down(x)
        y = paddle.concat([self.conv1(x), self.blocks(self.conv2(x))], axis=1)
        return self.conv3(self.attn(y))


def scaled_channels(channels: Sequence[int], width_mult: float) -> List[int]:
    """PaddleDetection's width rounding: max(round(c * width_mult), 1)."""
    return [max(round(c * width_mult), 1) for c in channels]


def scaled_depths(layers: Sequence[int], depth_mult: float) -> List[int]:
    """PaddleDetection's depth rounding: max(round(n * depth_mult), 1)."""
    return [max(round(n * depth_mult), 1) for n in layers]


class CSPResNet(nn.Layer):
    """CSPResNet: a 3-conv ("large") or 2-conv stem at stride 2, then stages at strides 4, 8, 16, 32.

    Args:
        layers: BasicBlocks per stage before `depth_mult`.
        channels: stem width then each stage's output width, before `width_mult`.
        return_idx: stages returned by `forward` (0 = stride 4).
        use_large_stem: three stem convs (PP-YOLOE+) instead of two.
        use_alpha: a learnt scale on each RepVgg 1x1 branch.
    Attributes:
        out_channels, out_strides: of the returned stages.
    """

    def __init__(self, layers: Sequence[int] = (3, 6, 6, 3),
                 channels: Sequence[int] = (64, 128, 256, 512, 1024),
                 return_idx: Sequence[int] = (1, 2, 3), use_large_stem: bool = True, use_alpha: bool = True,
                 width_mult: float = 1.0, depth_mult: float = 1.0) -> None:
        super().__init__()
        ch = scaled_channels(channels, width_mult)
        depths = scaled_depths(layers, depth_mult)
        stem = [("conv1", ConvBN(3, ch[0] // 2, 3, stride=2))]
        if use_large_stem:
            stem += [("conv2", ConvBN(ch[0] // 2, ch[0] // 2, 3)), ("conv3", ConvBN(ch[0] // 2, ch[0], 3))]
        else:
            stem += [("conv2", ConvBN(ch[0] // 2, ch[0], 3))]
        self.stem = nn.Sequential(*stem)
        self.stages = nn.Sequential(*[(str(i), CSPResStage(ch[i], ch[i + 1], depths[i], use_alpha))
                                      for i in range(len(ch) - 1)])
        self.return_idx = list(return_idx)
        self.out_channels = [ch[i + 1] for i in self.return_idx]
        self.out_strides = [4 * 2 ** i for i in self.return_idx]

    def forward(self, image: paddle.Tensor) -> List[paddle.Tensor]:
        """image float32 [N, 3, H, W] -> the `return_idx` stage outputs [N, C_i, H / s_i, W / s_i]."""
        x = self.stem(image)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.return_idx:
                outs.append(x)
        return outs
