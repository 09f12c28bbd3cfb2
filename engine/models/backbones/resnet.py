"""ResNet (https://arxiv.org/abs/1512.03385), ResNet-vd (https://arxiv.org/abs/1812.01187) and ResNeXt
(https://arxiv.org/abs/1611.05431) backbones.

Parameter names are an external contract: they reproduce PaddleDetection's state_dict
(`conv1.conv1_1.conv.weight`, `res2.res2a.branch2a.norm._mean`, `res4.res4b22.short.conv.conv.weight`, ...;
see ../shared/reference/params/MaskRCNN-*.json), so official `.pdparams` files load unchanged.
"""
from typing import Any, Dict, List, Sequence, Type, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.regularizer import L2Decay

from ...errors import ConfigError

BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3],
                    152: [3, 8, 36, 3]}
STAGE_STRIDES = [4, 8, 16, 32]  # res2..res5
STAGE_WIDTHS = [1, 2, 4, 8]  # each stage's bottleneck width, in units of base_channels


class ConvNormLayer(nn.Layer):
    """Conv (no bias) + BatchNorm (+ ReLU), PaddleDetection's ConvNormLayer with `norm_type: bn`.

    With `freeze_norm` the BN affine parameters are not trained (stop_gradient) and the BN always
    normalises with its running statistics, which never change (`use_global_stats`), in train and
    eval mode alike: a fixed per-channel affine map (`fold_norm` can merge it into the conv).

    Args:
        ch_in, ch_out, kernel, stride, groups: the convolution ("same" padding, (kernel - 1) // 2).
        relu: apply ReLU after the norm.
        lr: learning-rate multiplier of the conv weight (and of the BN parameters unless frozen).
        freeze_norm: frozen BN as described above.
        norm_decay: L2 weight decay of the BN parameters (overrides the optimizer's global decay).
    """

    def __init__(self, ch_in: int, ch_out: int, kernel: int, stride: int, groups: int = 1,
                 relu: bool = False, lr: float = 1.0, freeze_norm: bool = True,
                 norm_decay: float = 0.0) -> None:
        super().__init__()
        self.relu = relu
        self.conv = nn.Conv2D(ch_in, ch_out, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups,
                              weight_attr=ParamAttr(learning_rate=lr), bias_attr=False)
        norm_lr = 0.0 if freeze_norm else lr

        def norm_attr() -> ParamAttr:
            return ParamAttr(learning_rate=norm_lr, regularizer=L2Decay(norm_decay),
                             trainable=not freeze_norm)

        self.norm = nn.BatchNorm2D(ch_out, weight_attr=norm_attr(), bias_attr=norm_attr(),
                                   use_global_stats=True if freeze_norm else None)
        self.freeze_norm = freeze_norm

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


class BottleNeck(nn.Layer):
    """1x1 -> 3x3 (grouped for ResNeXt; the stride here in variants b-d) -> 1x1 (x4), plus the shortcut.

    The projection shortcut of the first block is a strided 1x1 conv (variant b), or for variant d a 2x2
    average pool then a 1x1 conv when the block downsamples.
    """

    expansion = 4

    def __init__(self, ch_in: int, ch_out: int, stride: int, shortcut: bool, variant: str = "b",
                 groups: int = 1, base_width: int = 64, **norm: Any) -> None:
        super().__init__()
        stride1, stride2 = (stride, 1) if variant == "a" else (1, stride)
        width = int(ch_out * (base_width / 64.0)) * groups
        if width < groups or width <= 0:
            raise ConfigError(f"ResNeXt width {width} (ch_out {ch_out}, base_width {base_width}, groups "
                              f"{groups}) is too narrow: raise Architecture.base_channels")
        self.branch2a = ConvNormLayer(ch_in, width, 1, stride1, relu=True, **norm)
        self.branch2b = ConvNormLayer(width, width, 3, stride2, groups=groups, relu=True, **norm)
        self.branch2c = ConvNormLayer(width, ch_out * self.expansion, 1, 1, **norm)
        self.shortcut = shortcut
        if not shortcut:
            self.short = _projection(ch_in, ch_out * self.expansion, stride, variant, norm)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.branch2c(self.branch2b(self.branch2a(x)))
        return F.relu(out + (x if self.shortcut else self.short(x)))


class BasicBlock(nn.Layer):
    """3x3 -> 3x3 plus the shortcut (ResNet-18/34). Registers `short` first, as PaddleDetection does."""

    expansion = 1

    def __init__(self, ch_in: int, ch_out: int, stride: int, shortcut: bool, variant: str = "b",
                 groups: int = 1, base_width: int = 64, **norm: Any) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ConfigError("ResNet-18/34 (BasicBlock) supports only groups=1 and base_width=64")
        self.shortcut = shortcut
        if not shortcut:
            self.short = _projection(ch_in, ch_out, stride, variant, norm)
        self.branch2a = ConvNormLayer(ch_in, ch_out, 3, stride, relu=True, **norm)
        self.branch2b = ConvNormLayer(ch_out, ch_out, 3, 1, **norm)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.branch2b(self.branch2a(x))
        return F.relu(out + (x if self.shortcut else self.short(x)))


Block = Union[Type[BottleNeck], Type[BasicBlock]]


def _projection(ch_in: int, ch_out: int, stride: int, variant: str, norm: Dict[str, Any]) -> nn.Layer:
    if variant == "d" and stride == 2:
        short = nn.Sequential()
        short.add_sublayer("pool", nn.AvgPool2D(kernel_size=2, stride=2, padding=0, ceil_mode=True))
        short.add_sublayer("conv", ConvNormLayer(ch_in, ch_out, 1, 1, **norm))
        return short
    return ConvNormLayer(ch_in, ch_out, 1, stride, **norm)


def block_name(stage_num: int, count: int, i: int) -> str:
    """PaddleDetection's block names: res4a, res4b1 .. res4b22 for deep res4 stages, else res2a, res2b, ..."""
    if count > 10 and stage_num == 4:
        return "res4a" if i == 0 else f"res4b{i}"
    return f"res{stage_num}{chr(ord('a') + i)}"


class ResStage(nn.Layer):
    """One stage (res2..res5): `count` blocks, the first one projecting (and downsampling except in res2).

    Args:
        block: BottleNeck or BasicBlock.
        ch_in: input channels; ch_out: bottleneck width (output = ch_out * block.expansion).
        count: blocks; stage_num: 2..5 (names the blocks; res2 keeps the resolution).
        variant, groups, base_width: block options; norm: ConvNormLayer options (lr, freeze_norm, norm_decay).
    """

    def __init__(self, block: Block, ch_in: int, ch_out: int, count: int, stage_num: int, variant: str = "b",
                 groups: int = 1, base_width: int = 64, **norm: Any) -> None:
        super().__init__()
        self.blocks: List[nn.Layer] = []  # a plain list: registered once, under PaddleDetection's names
        for i in range(count):
            layer = block(ch_in, ch_out, stride=2 if i == 0 and stage_num != 2 else 1, shortcut=i > 0,
                          variant=variant, groups=groups, base_width=base_width, **norm)
            self.add_sublayer(block_name(stage_num, count, i), layer)
            self.blocks.append(layer)
            ch_in = ch_out * block.expansion
        self.out_channels = ch_out * block.expansion

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class ResNet(nn.Layer):
    """ResNet / ResNet-vd / ResNeXt backbone: stem, 3x3 stride-2 max pool, then stages res2..res5.

    Args:
        depth: 18, 34 (BasicBlock), 50, 101, 152 (BottleNeck).
        variant: "b" (7x7 stem, stride in the 3x3 conv), "d" (three 3x3 stem convs, average-pool
            shortcut), also "a" / "c" as PaddleDetection defines them.
        groups, base_width: ResNeXt cardinality and per-group width (64x4d: 64, 4); 1, 64 for ResNet.
        base_channels: stem output and res2 bottleneck width; 64 is the standard network, smaller values
            scale every layer (16: a quarter of the channels everywhere, for demos and tests).
        lr_mult_list: learning-rate multipliers of res2..res5 (the stem keeps 1.0).
        norm_decay: L2 decay of the BN parameters; freeze_norm: frozen BN (see ConvNormLayer).
        freeze_at: -1 trains everything; k >= 0 freezes (stop_gradient) the stem and res2..res(k+2)
            (PaddleDetection's convention: 0 = stem and res2).
        return_idx: the stages returned by `forward` (0 = res2 .. 3 = res5).
        num_stages: stages built (3 for the C4 Mask R-CNN, whose res5 lives in the RoI head).
    Attributes:
        out_channels, out_strides: of the returned stages, in order.
    """

    def __init__(self, depth: int = 50, variant: str = "b", groups: int = 1, base_width: int = 64,
                 base_channels: int = 64, lr_mult_list: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 norm_decay: float = 0.0, freeze_norm: bool = True, freeze_at: int = 0,
                 return_idx: Sequence[int] = (0, 1, 2, 3), num_stages: int = 4) -> None:
        super().__init__()
        _check_args(depth, variant, base_channels, lr_mult_list, return_idx, num_stages)
        self.depth, self.variant, self.groups, self.base_width = depth, variant, groups, base_width
        self.return_idx = list(return_idx)
        self.conv1 = _stem(variant, base_channels, "res_conv1" if groups > 1 else "conv1",
                           freeze_norm=freeze_norm, norm_decay=norm_decay)
        block: Block = BottleNeck if depth >= 50 else BasicBlock
        ch_in = base_channels
        self.res_layers: List[ResStage] = []
        for i in range(num_stages):
            stage = ResStage(block, ch_in, base_channels * STAGE_WIDTHS[i], BLOCKS_PER_STAGE[depth][i], i + 2,
                             variant=variant, groups=groups, base_width=base_width, lr=float(lr_mult_list[i]),
                             freeze_norm=freeze_norm, norm_decay=norm_decay)
            self.add_sublayer(f"res{i + 2}", stage)
            self.res_layers.append(stage)
            ch_in = stage.out_channels
        self.out_channels = [self.res_layers[i].out_channels for i in self.return_idx]
        self.out_strides = [STAGE_STRIDES[i] for i in self.return_idx]
        if freeze_at >= 0:
            for layer in [self.conv1] + self.res_layers[:freeze_at + 1]:
                for param in layer.parameters():
                    param.stop_gradient = True

    def forward(self, image: paddle.Tensor) -> List[paddle.Tensor]:
        """float32 [N, 3, H, W] -> the `return_idx` stages, [N, out_channels[i], H / s, W / s] (ceil)."""
        x = F.max_pool2d(self.conv1(image), kernel_size=3, stride=2, padding=1)
        outs = []
        for idx, stage in enumerate(self.res_layers):
            x = stage(x)
            if idx in self.return_idx:
                outs.append(x)
        return outs


def _stem(variant: str, channels: int, name: str, **norm: Any) -> nn.Sequential:
    """7x7/2 conv (variants a, b) or 3x3/2, 3x3, 3x3 convs (variants c, d; ch/2, ch/2, ch)."""
    if variant in ("c", "d"):
        half = channels // 2
        spec = [(3, half, 3, 2, "conv1_1"), (half, half, 3, 1, "conv1_2"), (half, channels, 3, 1, "conv1_3")]
    else:
        spec = [(3, channels, 7, 2, name)]
    stem = nn.Sequential()
    for ch_in, ch_out, kernel, stride, layer_name in spec:
        stem.add_sublayer(layer_name, ConvNormLayer(ch_in, ch_out, kernel, stride, relu=True, lr=1.0, **norm))
    return stem


def _check_args(depth: int, variant: str, base_channels: int, lr_mult_list: Sequence[float],
                return_idx: Sequence[int], num_stages: int) -> None:
    if depth not in BLOCKS_PER_STAGE:
        raise ConfigError(f"ResNet depth must be one of {sorted(BLOCKS_PER_STAGE)}, got {depth}")
    if variant not in ("a", "b", "c", "d"):
        raise ConfigError(f"ResNet variant must be 'a', 'b', 'c' or 'd', got {variant!r}")
    if not isinstance(base_channels, int) or base_channels < 2 or base_channels % 2:
        raise ConfigError(f"Architecture.base_channels must be an even integer >= 2 (64 = standard), "
                          f"got {base_channels!r}")
    if len(lr_mult_list) != 4:
        raise ConfigError(f"lr_mult_list needs 4 values (res2..res5), got {list(lr_mult_list)}")
    if not 1 <= num_stages <= 4 or not return_idx or not all(0 <= i < num_stages for i in return_idx):
        raise ConfigError(f"return_idx {list(return_idx)} must name built stages (num_stages {num_stages})")


def fold_norm(layer: nn.Layer) -> int:
    """Fold the BN of every ConvNormLayer under `layer` into its conv, for inference / export only.

    The conv gets weight * gamma / sqrt(var + eps) and a bias beta - mean * gamma / sqrt(var + eps), and the
    BN is replaced by the identity: the output is eval-mode BN's (running statistics). Not a speed-up in
    dygraph (Paddle adds a conv bias as its own op, so conv + add replaces conv + BN; measured equal on CPU),
    and Paddle Inference's conv_bn_fuse_pass folds exported models by itself; it is for tools that want a
    BN-free graph. The state_dict changes (conv biases added, BN entries gone), so fold a model you will
    not train or save as training weights. Returns how many layers were folded (0 on a second call).
    """
    folded = 0
    for sub in layer.sublayers(include_self=True):
        if not isinstance(sub, ConvNormLayer) or not isinstance(sub.norm, nn.BatchNorm2D):
            continue
        norm, conv = sub.norm, sub.conv
        assert norm.weight is not None and norm.bias is not None  # ConvNormLayer's BN is always affine
        with paddle.no_grad():
            scale = norm.weight / paddle.sqrt(norm._variance + norm._epsilon)
            weight = conv.weight * scale.reshape([-1, 1, 1, 1])
            bias = norm.bias - norm._mean * scale
        conv.weight.set_value(weight)
        conv.bias = conv.create_parameter(shape=bias.shape, dtype=bias.dtype, is_bias=True)
        conv.bias.set_value(bias)
        conv.bias.stop_gradient = True
        sub.norm = nn.Identity()  # type: ignore[assignment]
        folded += 1
    return folded
