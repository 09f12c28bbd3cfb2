"""Mask-RT-DETR's hybrid encoder (https://arxiv.org/abs/2304.08069): self-attention within one level,
cross-scale fusion (top-down FPN then bottom-up PAN with CSP-RepVGG blocks), and the mask feature branch
that turns the fused levels plus the stride-4 backbone map into mask prototypes.

Parameter names are an external contract: they reproduce PaddleDetection's state_dict
(`input_proj.0.0.weight`, `encoder.0.layers.0.self_attn.in_proj_weight`,
`fpn_blocks.1.bottlenecks.2.conv1.bn._mean`, `mask_feat_head.scale_heads.2.2.0.conv.weight`,
`enc_mask_output.1.bias`, ...; see ../shared/reference/params/Mask-RT-DETR-*.json under `neck.`), so official
`.pdparams` load unchanged.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Uniform
from paddle.regularizer import L2Decay

from ...errors import ConfigError
from ..layers.attention import MultiHeadAttention
from .csp_rep_layer import ConvBN, CSPRepLayer
from .fpn import upsample2x_nearest

IntLike = Union[int, paddle.Tensor]


@dataclass
class EncoderLayerConfig:
    """The transformer encoder that runs on the chosen levels."""

    num_layers: int = 1
    num_heads: int = 8
    dim_feedforward: int = 1024
    dropout: float = 0.0
    activation: str = "gelu"  # a paddle.nn.functional activation name


def sincos_position_embedding(h: IntLike, w: IntLike, dim: int,
                              temperature: float = 10000.0) -> paddle.Tensor:
    """The fixed 2-D sine-cosine position embedding of an h x w map flattened row by row: [1, h * w, dim].

    Channels are [sin(a * f), cos(a * f), sin(b * f), cos(b * f)], f_k = temperature^(-k / (dim / 4)). Token
    t gets a = t // h and b = t % h: PaddleDetection meshgrids (w, h) "ij" and flattens it, which over the
    row-major (h, w) tokens is this order (the transpose of (x, y) on square maps); the released weights were
    trained with it, so it is kept. `h` and `w` may be shape tensors (traced graphs: any input size).
    """
    if dim % 4:
        raise ConfigError(f"the encoder width {dim} must be divisible by 4 for the 2-D position embedding")
    quarter = dim // 4
    inv_freq = 1.0 / (temperature ** (paddle.arange(quarter, dtype="float32") / quarter))
    token = paddle.arange(h * w, dtype="int64")
    a = (token // h).astype("float32").unsqueeze(-1) * inv_freq
    b = (token % h).astype("float32").unsqueeze(-1) * inv_freq
    return paddle.concat([a.sin(), a.cos(), b.sin(), b.cos()], axis=1).unsqueeze(0)


def _uniform_linear(d_in: int, d_out: int) -> nn.Linear:
    bound = d_in ** -0.5
    return nn.Linear(d_in, d_out, weight_attr=ParamAttr(initializer=Uniform(-bound, bound)),
                     bias_attr=ParamAttr(initializer=Uniform(-bound, bound)))


class TransformerEncoderLayer(nn.Layer):
    """Post-norm encoder layer: x = norm1(x + attn(x + pos, x + pos, x)); x = norm2(x + ffn(x))."""

    def __init__(self, d_model: int, cfg: EncoderLayerConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, cfg.num_heads, cfg.dropout)
        self.linear1 = _uniform_linear(d_model, cfg.dim_feedforward)
        self.linear2 = _uniform_linear(cfg.dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = cfg.dropout
        self.activation = getattr(F, cfg.activation)

    def forward(self, src: paddle.Tensor, pos_embed: paddle.Tensor) -> paddle.Tensor:
        """src [B, L, d], pos_embed [1, L, d] -> [B, L, d]."""
        q = src + pos_embed
        src = self.norm1(src + self._drop(self.self_attn(q, q, value=src)))
        hidden = self._drop(self.activation(self.linear1(src)))
        return self.norm2(src + self._drop(self.linear2(hidden)))

    def _drop(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.dropout(x, self.dropout, training=True) if self.dropout and self.training else x


class TransformerEncoder(nn.Layer):
    """`num_layers` encoder layers sharing one position embedding."""

    def __init__(self, d_model: int, cfg: EncoderLayerConfig) -> None:
        super().__init__()
        self.layers = nn.LayerList([TransformerEncoderLayer(d_model, cfg) for _ in range(cfg.num_layers)])

    def forward(self, src: paddle.Tensor, pos_embed: paddle.Tensor) -> paddle.Tensor:
        for layer in self.layers:
            src = layer(src, pos_embed)
        return src


class BilinearUpsample2x(nn.Layer):
    """[N, C, H, W] -> [N, C, 2H, 2W], bilinear, half-pixel centres (align_corners=False)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return upsample2x_bilinear(x)


def upsample2x_bilinear(x: paddle.Tensor) -> paddle.Tensor:
    """[N, C, H, W] -> [N, C, 2H, 2W]: F.interpolate(scale_factor=2, mode="bilinear", align_corners=False).

    Eager code calls interpolate. A traced graph gets the same map as a depthwise stride-2 transposed
    convolution: with half-pixel centres output 2i is 0.25 x[i-1] + 0.75 x[i] and output 2i+1 is
    0.75 x[i] + 0.25 x[i+1] (edges clamped), i.e. the kernel [0.25, 0.75, 0.75, 0.25] per axis over the input
    padded by one edge copy, cropped by 3. Paddle Inference's oneDNN executor cannot run interpolation ops
    (their float-list `scale` attribute); values agree to float rounding.
    """
    if paddle.in_dynamic_mode():
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    x = paddle.concat([x[:, :, :1], x, x[:, :, -1:]], axis=2)
    x = paddle.concat([x[:, :, :, :1], x, x[:, :, :, -1:]], axis=3)
    taps = paddle.to_tensor([0.25, 0.75, 0.75, 0.25], dtype=x.dtype)
    kernel = (taps.unsqueeze(1) * taps.unsqueeze(0)).reshape([1, 1, 4, 4]).tile([x.shape[1], 1, 1, 1])
    return F.conv2d_transpose(x, kernel, stride=2, padding=3, groups=x.shape[1])


class MaskFeatFPN(nn.Layer):
    """Brings the fused levels (strides 8, 16, 32) to stride 8 (3x3 conv + bilinear 2x per octave), sums them
    and applies a 3x3 conv: [N, out_channels, H / 8, W / 8]."""

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], feat_channels: int,
                 out_channels: int) -> None:
        super().__init__()
        self.scale_heads = nn.LayerList()
        for ch_in, stride in zip(in_channels, strides):
            octaves = (stride // strides[0]).bit_length() - 1
            head: List[nn.Layer] = []
            for k in range(max(1, octaves)):
                head.append(nn.Sequential(ConvBN(ch_in if k == 0 else feat_channels, feat_channels, 3)))
                if octaves:
                    head.append(BilinearUpsample2x())
            self.scale_heads.append(nn.Sequential(*head))
        self.output_conv = ConvBN(feat_channels, out_channels, 3)

    def forward(self, feats: Sequence[paddle.Tensor]) -> paddle.Tensor:
        # every head ends at the finest level's size (inputs are multiples of 32), so no resize is needed
        heads = list(self.scale_heads)
        output = heads[0](feats[0])
        for head, feat in zip(heads[1:], feats[1:]):
            output = output + head(feat)
        return self.output_conv(output)


class MaskHybridEncoder(nn.Layer):
    """Hybrid encoder with the mask feature branch.

    Args:
        in_channels: channels of the backbone maps at strides `feat_strides` (4, 8, 16, 32), finest first; the
            stride-4 map feeds only the mask branch.
        feat_strides: their strides (the first must be 4, each next one twice the previous).
        hidden_dim: width of the projected levels, the encoder and the outputs.
        encoder_idx: levels (indices into in_channels, so 1..3) that get self-attention (PaddleDetection's
            `use_encoder_idx`: [2] for Mask-RT-DETR-S / M, [3] for L / X / H).
        encoder: the encoder layers (count, heads, feed-forward width, dropout, activation).
        num_prototypes: mask prototype channels.
        expansion: CSPRepLayer hidden width as a fraction of hidden_dim; depth_mult scales its 3 blocks.
        mask_feat_channels: (width of the mask FPN, width of the mask branch before the prototype conv).
        pe_temperature: temperature of the position embedding.
    Attributes:
        out_channels, out_strides: of the three fused levels; num_prototypes.
    """

    def __init__(self, in_channels: Sequence[int], feat_strides: Sequence[int] = (4, 8, 16, 32),
                 hidden_dim: int = 256, encoder_idx: Sequence[int] = (3,),
                 encoder: Optional[EncoderLayerConfig] = None, num_prototypes: int = 32,
                 expansion: float = 1.0, depth_mult: float = 1.0,
                 mask_feat_channels: Sequence[int] = (64, 64), pe_temperature: float = 10000.0) -> None:
        super().__init__()
        _check_args(in_channels, feat_strides, encoder_idx, mask_feat_channels)
        levels = list(in_channels[1:])
        encoder = encoder or EncoderLayerConfig()
        self.hidden_dim, self.pe_temperature, self.num_prototypes = hidden_dim, pe_temperature, num_prototypes
        self.encoder_levels = [i - 1 for i in encoder_idx]  # indices into the 3 fused levels
        self.out_channels = [hidden_dim] * len(levels)
        self.out_strides = list(feat_strides[1:])
        self.input_proj = nn.LayerList([nn.Sequential(
            nn.Conv2D(ch, hidden_dim, 1, bias_attr=False),
            nn.BatchNorm2D(hidden_dim, weight_attr=ParamAttr(regularizer=L2Decay(0.0)),
                           bias_attr=ParamAttr(regularizer=L2Decay(0.0)))) for ch in levels])
        self.encoder = nn.LayerList([TransformerEncoder(hidden_dim, encoder) for _ in self.encoder_levels])
        blocks = round(3 * depth_mult)
        pairs = len(levels) - 1
        self.lateral_convs = nn.LayerList([ConvBN(hidden_dim, hidden_dim, 1) for _ in range(pairs)])
        self.fpn_blocks = nn.LayerList([CSPRepLayer(hidden_dim * 2, hidden_dim, blocks, expansion)
                                        for _ in range(pairs)])
        self.downsample_convs = nn.LayerList([ConvBN(hidden_dim, hidden_dim, 3, stride=2)
                                              for _ in range(pairs)])
        self.pan_blocks = nn.LayerList([CSPRepLayer(hidden_dim * 2, hidden_dim, blocks, expansion)
                                        for _ in range(pairs)])
        feat_ch, mask_ch = mask_feat_channels
        self.mask_feat_head = MaskFeatFPN(self.out_channels, self.out_strides, feat_ch, mask_ch)
        self.enc_mask_lateral = ConvBN(in_channels[0], mask_ch, 3)
        self.enc_mask_output = nn.Sequential(ConvBN(mask_ch, mask_ch, 3),
                                             nn.Conv2D(mask_ch, num_prototypes, 1))

    def forward(self, feats: Sequence[paddle.Tensor]) -> Tuple[List[paddle.Tensor], paddle.Tensor]:
        """Backbone maps [N, in_channels[i], H / s_i, W / s_i] (H, W multiples of 32) -> (three fused levels
        [N, hidden_dim, H / s, W / s] for s = 8, 16, 32, mask prototypes [N, num_prototypes, H / 4, W / 4]).

        Raises:
            ConfigError: the maps do not halve exactly level to level (an input side not a multiple of 32).
        """
        if paddle.in_dynamic_mode():
            _check_sizes(feats)
        proj = [conv(feat) for conv, feat in zip(self.input_proj, feats[1:])]
        for encoder, level in zip(self.encoder, self.encoder_levels):
            proj[level] = self._encode(encoder, proj[level])
        fused = self._fuse(proj)
        mask_feat = upsample2x_bilinear(self.mask_feat_head(fused)) + self.enc_mask_lateral(feats[0])
        return fused, self.enc_mask_output(mask_feat)

    def _encode(self, encoder: nn.Layer, x: paddle.Tensor) -> paddle.Tensor:
        """Self-attention over the h * w positions of [N, C, h, w]; the position embedding follows the
        shape."""
        if paddle.in_dynamic_mode():
            h, w = x.shape[2], x.shape[3]
        else:
            shape = paddle.shape(x).astype("int64")
            h, w = shape[2], shape[3]
        pos = sincos_position_embedding(h, w, self.hidden_dim, self.pe_temperature)
        memory = encoder(x.flatten(2).transpose([0, 2, 1]), pos)
        return memory.transpose([0, 2, 1]).reshape([-1, self.hidden_dim, h, w])

    def _fuse(self, proj: List[paddle.Tensor]) -> List[paddle.Tensor]:
        """Top-down (lateral 1x1 conv, nearest 2x, concat, CSP block) then bottom-up (3x3/2 conv, concat, CSP
        block), finest level first in and out."""
        top_down = [proj[-1]]
        for step, low in enumerate(reversed(proj[:-1])):
            high = self.lateral_convs[step](top_down[0])
            top_down[0] = high
            top_down.insert(0, self.fpn_blocks[step](paddle.concat([upsample2x_nearest(high), low], axis=1)))
        outs = [top_down[0]]
        for step, high in enumerate(top_down[1:]):
            down = self.downsample_convs[step](outs[-1])
            outs.append(self.pan_blocks[step](paddle.concat([down, high], axis=1)))
        return outs


def _check_sizes(feats: Sequence[paddle.Tensor]) -> None:
    sizes = [tuple(f.shape[2:]) for f in feats]
    if any(big != (2 * h, 2 * w) for big, (h, w) in zip(sizes, sizes[1:])):
        raise ConfigError(f"Mask-RT-DETR needs input heights and widths that are multiples of 32 (its levels "
                          f"must halve exactly); got maps of {sizes} for an input of about "
                          f"{sizes[0][0] * 4} x {sizes[0][1] * 4}: use multiples of 32 in TrainReader / "
                          f"EvalReader (short_sizes, max_size, batch_sizes)")


def _check_args(in_channels: Sequence[int], feat_strides: Sequence[int], encoder_idx: Sequence[int],
                mask_feat_channels: Sequence[int]) -> None:
    if len(in_channels) != len(feat_strides) or len(in_channels) < 3 or feat_strides[0] != 4 or any(
            b != 2 * a for a, b in zip(feat_strides, feat_strides[1:])):
        raise ConfigError(f"MaskHybridEncoder needs backbone maps at strides 4, 8, 16, ... (one channel "
                          f"count each), got channels {list(in_channels)} at strides {list(feat_strides)}")
    if not all(1 <= i < len(in_channels) for i in encoder_idx):
        raise ConfigError(f"encoder levels {list(encoder_idx)} must be in 1..{len(in_channels) - 1} "
                          f"(0 is the stride-4 map, which only feeds the mask branch)")
    if len(mask_feat_channels) != 2:
        raise ConfigError(f"mask_feat_channels needs 2 values (mask FPN width, mask branch width), "
                          f"got {list(mask_feat_channels)}")
