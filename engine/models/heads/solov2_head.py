"""SOLOv2's category and kernel branches (https://arxiv.org/abs/2003.10152).

Each FPN level is resampled to an S x S grid; every cell predicts class scores (category branch) and a
1x1 kernel that, applied to the mask features, gives that cell's instance mask (kernel branch).

Parameter names are an external contract (../shared/reference/params/SOLOv2.json): the branches are
`bbox_head.kernel_convs.{i}` / `bbox_head.cate_convs.{i}`, and the two output convs are registered twice,
as `bbox_head.solo_kernel` and `solo_kernel` (same for `solo_cate`), as PaddleDetection does.
"""
import math
from typing import List, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant, Normal

from ...errors import ConfigError
from ..ops.bilinear import resize_bilinear
from .solov2_layers import ConvGN, with_coords

PRIOR_PROB = 0.01  # initial foreground probability of the category logits


class SOLOv2Head(nn.Layer):
    """Category + kernel branches over 5 FPN levels.

    Args:
        num_classes: foreground classes.
        in_channels: FPN width.
        feat_channels: branch width (PaddleDetection's seg_feat_channels).
        stacked_convs: conv + GN + ReLU layers per branch.
        num_grids: grid size S of each level (finest first).
        kernel_channels: length of each predicted kernel (= mask feature channels).
        groups: GroupNorm groups.
    """

    def __init__(self, num_classes: int, in_channels: int = 256, feat_channels: int = 512,
                 stacked_convs: int = 4, num_grids: Sequence[int] = (40, 36, 24, 16, 12),
                 kernel_channels: int = 256, groups: int = 32) -> None:
        super().__init__()
        if len(num_grids) != 5 or min(num_grids) < 1:
            raise ConfigError(f"Architecture.num_grids needs 5 positive grid sizes (one per FPN level "
                              f"P2..P6), got {list(num_grids)}")
        self.num_classes = num_classes
        self.num_grids = [int(s) for s in num_grids]
        self.kernel_channels = kernel_channels
        self.kernel_convs: List[ConvGN] = []
        self.cate_convs: List[ConvGN] = []
        for i in range(stacked_convs):
            kernel_in = in_channels + 2 if i == 0 else feat_channels
            cate_in = in_channels if i == 0 else feat_channels
            self.kernel_convs.append(self.add_sublayer(f"bbox_head.kernel_convs.{i}",
                                                       ConvGN(kernel_in, feat_channels, 3, groups)))
            self.cate_convs.append(self.add_sublayer(f"bbox_head.cate_convs.{i}",
                                                     ConvGN(cate_in, feat_channels, 3, groups)))
        normal = ParamAttr(initializer=Normal(0.0, 0.01))
        solo_kernel = nn.Conv2D(feat_channels, kernel_channels, 3, padding=1, weight_attr=normal)
        prior = ParamAttr(initializer=Constant(-math.log((1 - PRIOR_PROB) / PRIOR_PROB)))
        solo_cate = nn.Conv2D(feat_channels, num_classes, 3, padding=1,
                              weight_attr=ParamAttr(initializer=Normal(0.0, 0.01)), bias_attr=prior)
        # two names per output conv, in PaddleDetection's order
        self.add_sublayer("bbox_head.solo_kernel", solo_kernel)
        self.solo_kernel = solo_kernel
        self.add_sublayer("bbox_head.solo_cate", solo_cate)
        self.solo_cate = solo_cate

    def forward(self, feats: Sequence[paddle.Tensor], kernel_levels: Optional[Sequence[int]] = None
                ) -> Tuple[List[paddle.Tensor], List[Optional[paddle.Tensor]]]:
        """FPN levels P2..P6 [N, in_channels, H_i, W_i] -> (category logits per level [N, C, S, S],
        kernels per level [N, kernel_channels, S, S]). P2 is first halved and P6 resized to P5's size.

        `kernel_levels`: run the kernel branch on these levels only (None where skipped). Training passes
        the levels with positive cells: the others' kernels meet no loss, and GroupNorm never mixes levels.
        """
        levels = [F.avg_pool2d(feats[0], 2, 2), feats[1], feats[2], feats[3],
                  resize_bilinear(feats[4], paddle.shape(feats[3])[2], paddle.shape(feats[3])[3])]
        cate_logits, kernels = [], []
        for level, (x, grid) in enumerate(zip(levels, self.num_grids)):
            kernel_feat = resize_bilinear(with_coords(x), grid, grid)
            cate_feat = kernel_feat[:, :-2]
            for conv in self.cate_convs:
                cate_feat = F.relu(conv(cate_feat))
            cate_logits.append(self.solo_cate(cate_feat))
            if kernel_levels is not None and level not in kernel_levels:
                kernels.append(None)
                continue
            for conv in self.kernel_convs:
                kernel_feat = F.relu(conv(kernel_feat))
            kernels.append(self.solo_kernel(kernel_feat))
        return cate_logits, kernels


def points_nms(probs: paddle.Tensor) -> paddle.Tensor:
    """Keep a cell's class probability only where it is the maximum of its 2x2 window (the cell, its
    upper and left neighbours): [N, C, S, S] -> same shape, others zeroed."""
    window_max = F.max_pool2d(probs, kernel_size=2, stride=1, padding=1)[:, :, :-1, :-1]
    return probs * (window_max == probs).astype(probs.dtype)
