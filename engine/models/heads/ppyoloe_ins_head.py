"""PP-YOLOE instance head: per-level classification, box-side distributions, mask coefficients, and mask
prototypes from the finest level (PaddleDetection's PPYOLOEInsHead; its parameter names).

Anchor points are computed from the feature shapes of each call, so any input size (a multiple of the
coarsest stride) works, eagerly and in an exported graph.
"""
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..backbones.cspresnet import ConvBN


class ESEAttn(nn.Layer):
    """Effective squeeze-excitation from the level's mean feature, then a 1x1 ConvBN."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2D(channels, channels, 1, weight_attr=nn.initializer.Normal(std=0.001))
        self.conv = ConvBN(channels, channels, 1)

    def forward(self, feat: paddle.Tensor, avg_feat: paddle.Tensor) -> paddle.Tensor:
        return self.conv(feat * F.sigmoid(self.fc(avg_feat)))


class MaskProto(nn.Layer):
    """Prototype masks at stride 4: 3x3 ConvBN, 2x transposed conv, 3x3 ConvBN, 1x1 ConvBN to `num_masks`."""

    def __init__(self, ch_in: int, num_protos: int, num_masks: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(ch_in, num_protos, 3)
        self.upsample = nn.Conv2DTranspose(num_protos, num_protos, 2, stride=2)
        self.conv2 = ConvBN(num_protos, num_protos, 3)
        self.conv3 = ConvBN(num_protos, num_masks, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv3(self.conv2(self.upsample(self.conv1(x))))


@dataclass
class HeadOutputs:
    """Raw head outputs over all anchors L (levels coarse to fine, row-major within a level).

    scores float32 [N, L, C] probabilities; distri float32 [N, L, 4 * B] box-side bin logits;
    coeffs float32 [N, L, K] mask coefficients; protos float32 [N, K, H/4, W/4] (None when the caller
    asked for none);
    points float32 [L, 2] anchor centres in stride units; strides float32 [L, 1].
    """

    scores: paddle.Tensor
    distri: paddle.Tensor
    coeffs: paddle.Tensor
    protos: Optional[paddle.Tensor]
    points: paddle.Tensor
    strides: paddle.Tensor


class PPYOLOEInsHead(nn.Layer):
    """Args:
        in_channels: neck channels per level, coarse to fine (matching `fpn_strides`).
        num_classes: foreground classes.
        fpn_strides: level strides, coarse to fine.
        reg_max: box sides are distributions over bins 0..reg_max (stride units).
        num_masks: prototype masks (= coefficients per anchor); num_protos: prototype branch width.
        grid_cell_offset: anchor centre within its cell.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, fpn_strides: Sequence[int] = (32, 16, 8),
                 reg_max: int = 16, num_masks: int = 32, num_protos: int = 256,
                 grid_cell_offset: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.fpn_strides = list(fpn_strides)
        self.bins = reg_max + 1
        self.num_masks = num_masks
        self.grid_cell_offset = grid_cell_offset
        self.stem_cls = nn.LayerList([ESEAttn(c) for c in in_channels])
        self.stem_reg = nn.LayerList([ESEAttn(c) for c in in_channels])
        self.stem_ins = nn.LayerList([ESEAttn(c) for c in in_channels])
        prior_bias = -math.log((1 - 0.01) / 0.01)  # every class starts at probability 0.01
        zeros = nn.initializer.Constant(0.0)
        self.pred_cls = nn.LayerList([
            nn.Conv2D(c, num_classes, 3, padding=1, weight_attr=zeros,
                      bias_attr=nn.initializer.Constant(prior_bias)) for c in in_channels])
        self.pred_reg = nn.LayerList([
            nn.Conv2D(c, 4 * self.bins, 3, padding=1, weight_attr=zeros,
                      bias_attr=nn.initializer.Constant(1.0)) for c in in_channels])
        self.pred_ins = nn.LayerList([nn.Conv2D(c, num_masks, 3, padding=1) for c in in_channels])
        # the fixed projection of a bin distribution onto its expected value; never trained
        self.proj_conv = nn.Conv2D(self.bins, 1, 1, bias_attr=False)
        bins = paddle.arange(self.bins, dtype="float32").reshape([1, self.bins, 1, 1])
        self.proj_conv.weight.set_value(bins)
        self.proj_conv.weight.stop_gradient = True
        self.proto = MaskProto(in_channels[-1], num_protos, num_masks)

    def forward(self, feats: Sequence[paddle.Tensor], with_protos: bool = True) -> HeadOutputs:
        """feats: neck outputs coarse to fine, [N, C_i, H_i, W_i] -> HeadOutputs.

        `with_protos=False` leaves the prototype branch (3x3 convs at stride 4: most of the head's work) to a
        later `prototypes(feats)` call, for callers that may not need masks at all.
        """
        scores, distri, coeffs = [], [], []
        for i, feat in enumerate(feats):
            avg = F.adaptive_avg_pool2d(feat, 1)
            scores.append(_flat(F.sigmoid(self.pred_cls[i](self.stem_cls[i](feat, avg) + feat))))
            distri.append(_flat(self.pred_reg[i](self.stem_reg[i](feat, avg))))
            coeffs.append(_flat(self.pred_ins[i](self.stem_ins[i](feat, avg) + feat)))
        points, strides = self.anchor_points(feats)
        return HeadOutputs(paddle.concat(scores, axis=1), paddle.concat(distri, axis=1),
                           paddle.concat(coeffs, axis=1), self.prototypes(feats) if with_protos else None,
                           points, strides)

    def prototypes(self, feats: Sequence[paddle.Tensor]) -> paddle.Tensor:
        """float32 [N, K, H/4, W/4] prototype masks from the finest level (`feats[-1]`)."""
        return self.proto(feats[-1])

    def anchor_points(self, feats: Sequence[paddle.Tensor]) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """Anchor centres in stride units [L, 2] (x, y) and their strides [L, 1], from the feature shapes."""
        points: List[paddle.Tensor] = []
        strides: List[paddle.Tensor] = []
        for feat, stride in zip(feats, self.fpn_strides):
            shape = paddle.shape(feat)
            xs = paddle.arange(0, shape[3], dtype="float32") + self.grid_cell_offset
            ys = paddle.arange(0, shape[2], dtype="float32") + self.grid_cell_offset
            # broadcast adds, not meshgrid: its expand ops misread dynamic sizes under oneDNN
            grid_x = xs.unsqueeze(0) + paddle.zeros_like(ys).unsqueeze(1)
            grid_y = ys.unsqueeze(1) + paddle.zeros_like(xs).unsqueeze(0)
            level = paddle.stack([grid_x, grid_y], axis=-1).reshape([-1, 2])
            points.append(level)
            strides.append(paddle.full_like(level[:, :1], float(stride)))
        return paddle.concat(points), paddle.concat(strides)

    def side_distances(self, distri: paddle.Tensor) -> paddle.Tensor:
        """[N, L, 4 * B] bin logits -> [N, L, 4] expected side distances (stride units, l t r b)."""
        probs = F.softmax(distri.reshape([0, -1, 4, self.bins]), axis=-1)
        return paddle.matmul(probs, self.proj_conv.weight.reshape([self.bins, 1])).squeeze(-1)

    def decode_boxes(self, out: HeadOutputs) -> paddle.Tensor:
        """float32 [N, L, 4] boxes x1y1x2y2 in stride units of each anchor's level."""
        dist = self.side_distances(out.distri)
        return paddle.concat([out.points - dist[..., :2], out.points + dist[..., 2:]], axis=-1)


def _flat(x: paddle.Tensor) -> paddle.Tensor:
    """[N, C, H, W] -> [N, H * W, C]."""
    return x.flatten(2).transpose([0, 2, 1])
