"""CustomCSPPAN: PP-YOLOE's top-down (FPN) + bottom-up (PAN) neck of CSP stages, SPP on the deepest level.

Parameter names follow PaddleDetection (`fpn_stages.0.0.convs.spp.conv.conv.weight`, `pan_routes.1.bn...`).
"""
from typing import List, Sequence

import paddle
import paddle.nn as nn

from ..backbones.cspresnet import BasicBlock, ConvBN, scaled_channels, scaled_depths
from .fpn import upsample2x_nearest


class SPP(nn.Layer):
    """Concat of x and its stride-1 max pools (5, 9, 13), then a 1x1 ConvBN."""

    def __init__(self, ch_in: int, ch_out: int, pool_sizes: Sequence[int] = (5, 9, 13)) -> None:
        super().__init__()
        self.pools = [nn.MaxPool2D(k, stride=1, padding=k // 2) for k in pool_sizes]
        for i, pool in enumerate(self.pools):  # PaddleDetection's sublayer names (they hold no weights)
            self.add_sublayer(f"pool{i}", pool)
        self.conv = ConvBN(ch_in, ch_out, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv(paddle.concat([x] + [pool(x) for pool in self.pools], axis=1))


class CSPStage(nn.Layer):
    """Two 1x1 branches, one through `n` BasicBlocks without shortcut (SPP after the middle one if
    `spp`), concatenated and fused by a 1x1 ConvBN."""

    def __init__(self, ch_in: int, ch_out: int, n: int, spp: bool) -> None:
        super().__init__()
        mid = ch_out // 2
        self.conv1 = ConvBN(ch_in, mid, 1)
        self.conv2 = ConvBN(ch_in, mid, 1)
        self.convs = nn.Sequential()
        for i in range(n):
            self.convs.add_sublayer(str(i), BasicBlock(mid, shortcut=False))
            if spp and i == (n - 1) // 2:
                self.convs.add_sublayer("spp", SPP(mid * 4, mid))
        self.conv3 = ConvBN(mid * 2, ch_out, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv3(paddle.concat([self.conv1(x), self.convs(self.conv2(x))], axis=1))


class CustomCSPPAN(nn.Layer):
    """FPN + PAN over backbone levels ordered fine to coarse (strides 8, 16, 32).

    Args:
        in_channels: backbone channels per level, fine to coarse.
        out_channels: neck widths coarse to fine before `width_mult` (PaddleDetection's order).
        block_num: BasicBlocks per CSPStage before `depth_mult`.
        spp: SPP in the coarsest FPN stage.
    Attributes:
        out_channels: per returned level, coarse to fine (as `forward` returns them).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int] = (1024, 512, 256),
                 stage_num: int = 1, block_num: int = 3, spp: bool = True, width_mult: float = 1.0,
                 depth_mult: float = 1.0) -> None:
        super().__init__()
        outs = scaled_channels(out_channels, width_mult)
        n = scaled_depths([block_num], depth_mult)[0]
        ins = list(in_channels)[::-1]
        self.num_levels = len(ins)
        fpn_stages, fpn_routes = [], []
        for i, (ch_in, ch_out) in enumerate(zip(ins, outs)):
            if i > 0:
                ch_in += outs[i - 1] // 2
            fpn_stages.append(_stages(ch_in, ch_out, stage_num, n, spp and i == 0))
            if i < self.num_levels - 1:
                fpn_routes.append(ConvBN(ch_out, ch_out // 2, 1))
        self.fpn_stages = nn.LayerList(fpn_stages)
        self.fpn_routes = nn.LayerList(fpn_routes)
        pan_stages, pan_routes = [], []
        for i in range(self.num_levels - 1):  # fine to coarse, as PaddleDetection stores them
            pan_routes.append(ConvBN(outs[i + 1], outs[i + 1], 3, stride=2))
            pan_stages.append(_stages(outs[i] + outs[i + 1], outs[i], stage_num, n, False))
        self.pan_stages = nn.LayerList(pan_stages)
        self.pan_routes = nn.LayerList(pan_routes)
        self.out_channels = outs

    def forward(self, feats: Sequence[paddle.Tensor]) -> List[paddle.Tensor]:
        """Backbone levels fine to coarse -> neck levels coarse to fine (strides 32, 16, 8)."""
        fpn_feats = []
        route = None
        for i, feat in enumerate(feats[::-1]):
            if route is not None:
                feat = paddle.concat([route, feat], axis=1)
            route = self.fpn_stages[i](feat)
            fpn_feats.append(route)
            if i < self.num_levels - 1:
                route = upsample2x_nearest(self.fpn_routes[i](route))
        pan_feats = [fpn_feats[-1]]
        route = fpn_feats[-1]
        for i in reversed(range(self.num_levels - 1)):
            route = self.pan_stages[i](paddle.concat([self.pan_routes[i](route), fpn_feats[i]], axis=1))
            pan_feats.append(route)
        return pan_feats[::-1]


def _stages(ch_in: int, ch_out: int, stage_num: int, n: int, spp: bool) -> nn.Sequential:
    stage = nn.Sequential()
    for j in range(stage_num):
        stage.add_sublayer(str(j), CSPStage(ch_in if j == 0 else ch_out, ch_out, n, spp))
    return stage
