"""PP-HGNetV2 backbone (PaddleClas' High-Performance GPU Net v2, as RT-DETR uses it), sizes S, M, L, X, H.

Parameter names are an external contract: they reproduce PaddleDetection's state_dict
(`stem.stem2a.conv.weight`, `stages.2.blocks.0.layers.1.conv2.bn._mean`, `stages.3.downsample.conv.weight`,
...; see ../shared/reference/params/Mask-RT-DETR-*.json under `backbone.`), so official `.pdparams` load
unchanged.
"""
from typing import Any, Dict, List, Literal, NamedTuple, Optional, Sequence, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import KaimingNormal
from paddle.regularizer import L2Decay

from ...errors import ConfigError


class StageSpec(NamedTuple):
    """One stage: its block width (`mid`) and output width, how many HG blocks, whether it starts with a
    stride-2 depthwise conv, whether its blocks use light (1x1 + depthwise) layers, the layer kernel, and the
    number of layers per block."""

    ch_in: int
    mid: int
    ch_out: int
    blocks: int
    downsample: bool
    light: bool
    kernel: int
    layers: int


class ArchSpec(NamedTuple):
    stem: Sequence[int]  # input, middle and output channels of the stem
    stages: Sequence[StageSpec]


ARCHS: Dict[str, ArchSpec] = {
    "S": ArchSpec((3, 24, 32), (StageSpec(32, 32, 64, 1, False, False, 3, 3),
                                StageSpec(64, 48, 256, 1, True, False, 3, 3),
                                StageSpec(256, 96, 512, 2, True, True, 5, 3),
                                StageSpec(512, 192, 1024, 1, True, True, 5, 3))),
    "M": ArchSpec((3, 24, 32), (StageSpec(32, 32, 96, 1, False, False, 3, 4),
                                StageSpec(96, 64, 384, 1, True, False, 3, 4),
                                StageSpec(384, 128, 768, 3, True, True, 5, 4),
                                StageSpec(768, 256, 1536, 1, True, True, 5, 4))),
    "L": ArchSpec((3, 32, 48), (StageSpec(48, 48, 128, 1, False, False, 3, 6),
                                StageSpec(128, 96, 512, 1, True, False, 3, 6),
                                StageSpec(512, 192, 1024, 3, True, True, 5, 6),
                                StageSpec(1024, 384, 2048, 1, True, True, 5, 6))),
    "X": ArchSpec((3, 32, 64), (StageSpec(64, 64, 128, 1, False, False, 3, 6),
                                StageSpec(128, 128, 512, 2, True, False, 3, 6),
                                StageSpec(512, 256, 1024, 5, True, True, 5, 6),
                                StageSpec(1024, 512, 2048, 2, True, True, 5, 6))),
    "H": ArchSpec((3, 48, 96), (StageSpec(96, 96, 192, 2, False, False, 3, 6),
                                StageSpec(192, 192, 512, 3, True, False, 3, 6),
                                StageSpec(512, 384, 1024, 6, True, True, 5, 6),
                                StageSpec(1024, 768, 2048, 3, True, True, 5, 6))),
}
STAGE_STRIDES = [4, 8, 16, 32]


class ConvBNAct(nn.Layer):
    """Conv (no bias) + BatchNorm (+ ReLU); `padding="SAME"` pads like TensorFlow (2x2 stem convs: 0 before,
    1 after), otherwise (kernel - 1) // 2.

    With `freeze_norm` the BN affine parameters are not trained and the BN always normalises with its running
    statistics (`use_global_stats`), in train and eval mode alike, as PaddleDetection's frozen norm does.
    """

    def __init__(self, ch_in: int, ch_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 relu: bool = True, lr: float = 1.0, freeze_norm: bool = True,
                 same_pad: bool = False) -> None:
        super().__init__()
        self.relu = relu
        padding: Union[Literal["SAME"], int] = "SAME" if same_pad else (kernel - 1) // 2
        self.conv = nn.Conv2D(ch_in, ch_out, kernel, stride, padding=padding, groups=groups,
                              weight_attr=ParamAttr(learning_rate=lr, initializer=KaimingNormal()),
                              bias_attr=False)

        def norm_attr() -> ParamAttr:
            return ParamAttr(learning_rate=0.0 if freeze_norm else lr, regularizer=L2Decay(0.0),
                             trainable=not freeze_norm)

        self.bn = nn.BatchNorm2D(ch_out, weight_attr=norm_attr(), bias_attr=norm_attr(),
                                 use_global_stats=True if freeze_norm else None)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class LightConvBNAct(nn.Layer):
    """1x1 conv (no activation) then a depthwise k x k conv with ReLU."""

    def __init__(self, ch_in: int, ch_out: int, kernel: int, **norm: Any) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(ch_in, ch_out, 1, relu=False, **norm)
        self.conv2 = ConvBNAct(ch_out, ch_out, kernel, groups=ch_out, **norm)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv2(self.conv1(x))


class StemBlock(nn.Layer):
    """Stride-4 stem: 3x3/2 conv, then a 2x2 conv pair beside a 2x2 max pool (both keep the size), their
    concatenation through a 3x3/2 conv and a 1x1 conv."""

    def __init__(self, ch_in: int, mid: int, ch_out: int, **norm: Any) -> None:
        super().__init__()
        self.stem1 = ConvBNAct(ch_in, mid, 3, 2, **norm)
        self.stem2a = ConvBNAct(mid, mid // 2, 2, 1, same_pad=True, **norm)
        self.stem2b = ConvBNAct(mid // 2, mid, 2, 1, same_pad=True, **norm)
        self.stem3 = ConvBNAct(mid * 2, mid, 3, 2, **norm)
        self.stem4 = ConvBNAct(mid, ch_out, 1, 1, **norm)
        self.pool = nn.MaxPool2D(kernel_size=2, stride=1, ceil_mode=True, padding="SAME")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem1(x)
        convolved = self.stem2b(self.stem2a(x))
        x = paddle.concat([self.pool(x), convolved], axis=1)
        return self.stem4(self.stem3(x))


class HGBlock(nn.Layer):
    """`layers` chained convs whose outputs are all concatenated with the input, squeezed by a 1x1 conv to
    half the output width and expanded by another 1x1 conv; plus the input when `identity`."""

    def __init__(self, ch_in: int, mid: int, ch_out: int, kernel: int, layers: int, identity: bool,
                 light: bool, **norm: Any) -> None:
        super().__init__()
        self.identity = identity
        self.layers = nn.LayerList()
        for i in range(layers):
            width_in = ch_in if i == 0 else mid
            if light:
                self.layers.append(LightConvBNAct(width_in, mid, kernel, **norm))
            else:
                self.layers.append(ConvBNAct(width_in, mid, kernel, **norm))
        self.aggregation_squeeze_conv = ConvBNAct(ch_in + layers * mid, ch_out // 2, 1, **norm)
        self.aggregation_excitation_conv = ConvBNAct(ch_out // 2, ch_out, 1, **norm)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        outputs = [x]
        y = x
        for layer in self.layers:
            y = layer(y)
            outputs.append(y)
        y = self.aggregation_excitation_conv(self.aggregation_squeeze_conv(paddle.concat(outputs, axis=1)))
        return y + x if self.identity else y


class HGStage(nn.Layer):
    """An optional stride-2 depthwise conv (no activation) then `spec.blocks` HG blocks (residual after the
    first)."""

    def __init__(self, spec: StageSpec, **norm: Any) -> None:
        super().__init__()
        self.downsample: Optional[ConvBNAct] = None
        if spec.downsample:
            self.downsample = ConvBNAct(spec.ch_in, spec.ch_in, 3, 2, groups=spec.ch_in, relu=False, **norm)
        blocks = [HGBlock(spec.ch_in if i == 0 else spec.ch_out, spec.mid, spec.ch_out, spec.kernel,
                          spec.layers, identity=i > 0, light=spec.light, **norm) for i in range(spec.blocks)]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        return self.blocks(x)


class PPHGNetV2(nn.Layer):
    """PP-HGNetV2: a stride-4 stem and four stages (strides 4, 8, 16, 32).

    Args:
        arch: "S", "M", "L", "X" or "H" (Mask-RT-DETR-S uses PaddleClas' B1 widths, M B2, L B4, X B5, H B6).
        lr_mult_list: learning-rate multipliers of the stem and the four stages (5 values).
        return_idx: the stages `forward` returns (0 = stride 4 .. 3 = stride 32).
        freeze_stem: the stem's parameters are not trained (stop_gradient), PaddleDetection's
            `freeze_at: 0, freeze_stem_only: true`.
        freeze_norm: every BN is frozen (see ConvBNAct).
        width_mult: scales every width (1.0 = the published network; e.g. 0.25 for demos and tests).
    Attributes:
        out_channels, out_strides: of the returned stages, finest first.
    """

    def __init__(self, arch: str = "S", lr_mult_list: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0),
                 return_idx: Sequence[int] = (0, 1, 2, 3), freeze_stem: bool = True, freeze_norm: bool = True,
                 width_mult: float = 1.0) -> None:
        super().__init__()
        spec = _checked_arch(arch, lr_mult_list, return_idx, width_mult)
        self.return_idx = list(return_idx)
        self.stem = StemBlock(*spec.stem, lr=float(lr_mult_list[0]), freeze_norm=freeze_norm)
        self.stages = nn.LayerList([HGStage(stage, lr=float(lr), freeze_norm=freeze_norm)
                                    for stage, lr in zip(spec.stages, lr_mult_list[1:])])
        self.out_channels = [spec.stages[i].ch_out for i in self.return_idx]
        self.out_strides = [STAGE_STRIDES[i] for i in self.return_idx]
        if freeze_stem:
            for param in self.stem.parameters():
                param.stop_gradient = True

    def forward(self, image: paddle.Tensor) -> List[paddle.Tensor]:
        """float32 [N, 3, H, W] -> the `return_idx` stages, [N, out_channels[i], H / s, W / s] (s = 4..32,
        rounded up)."""
        x = self.stem(image)
        outs = []
        for idx, stage in enumerate(self.stages):
            x = stage(x)
            if idx in self.return_idx:
                outs.append(x)
        return outs


def _scale(channels: int, width_mult: float) -> int:
    """A width scaled by `width_mult`, kept a multiple of 4 (the stem and HG blocks halve widths)."""
    return max(4, int(round(channels * width_mult / 4.0)) * 4)


def _checked_arch(arch: str, lr_mult_list: Sequence[float], return_idx: Sequence[int],
                  width_mult: float) -> ArchSpec:
    if arch not in ARCHS:
        raise ConfigError(f"PPHGNetV2 arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if len(lr_mult_list) != 5:
        raise ConfigError(f"PPHGNetV2 lr_mult_list needs 5 values (stem, 4 stages), got {list(lr_mult_list)}")
    if not return_idx or not all(0 <= i < 4 for i in return_idx):
        raise ConfigError(f"PPHGNetV2 return_idx {list(return_idx)} must name stages 0..3")
    if not 0.0 < width_mult <= 1.0:
        raise ConfigError(f"PPHGNetV2 width_mult must be in (0, 1], got {width_mult!r}")
    spec = ARCHS[arch]
    if width_mult == 1.0:
        return spec
    stem = (spec.stem[0],) + tuple(_scale(c, width_mult) for c in spec.stem[1:])
    stages = [s._replace(ch_in=_scale(s.ch_in, width_mult), mid=_scale(s.mid, width_mult),
                         ch_out=_scale(s.ch_out, width_mult)) for s in spec.stages]
    return ArchSpec(stem, stages)
