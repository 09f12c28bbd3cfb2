"""Multi-scale deformable attention (Deformable DETR, https://arxiv.org/abs/2010.04159).

Parameter names are an external contract: `sampling_offsets`, `attention_weights`, `value_proj`,
`output_proj` reproduce PaddleDetection's `MSDeformableAttention` state_dict.

Each query looks at `num_points` places per head and level around its reference box and mixes the
bilinearly sampled values with softmax weights. The reference formulation samples with
`paddle.nn.functional.grid_sample` (align_corners=False, zero padding), the operator PaddleDetection uses
without its CUDA extension; it is what portable traced / exported graphs contain. In eager mode on CPU, and
in graphs traced for Paddle Inference with compiled operators (graph_target.compiled_ops_graph), a compiled
operator (ms_deform_attn_cpu.cc, built by compiled_ops.py) computes the same result and gradients in one
pass, many times faster; `INSTSEG_NATIVE_MS_DEFORM_ATTN=0` (or `INSTSEG_NATIVE_OPS=0`) keeps the
grid_sample formulation everywhere.
"""
import math
from pathlib import Path
from typing import List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .compiled_ops import CompiledOp

NATIVE = CompiledOp("instseg_ms_deform_attn", Path(__file__).with_name("ms_deform_attn_cpu.cc"),
                    switch="INSTSEG_NATIVE_MS_DEFORM_ATTN", fallback="grid_sample")


def deformable_sample(values: Sequence[paddle.Tensor], level_sizes: Sequence[paddle.Tensor],
                      locations: paddle.Tensor, weights: paddle.Tensor) -> paddle.Tensor:
    """The attention-weighted sum of bilinear samples of every level (zero outside the maps).

    Args:
        values: per level float32 [B, H_l * W_l, M * D], row-major over (y, x); M heads of D channels,
            head-major along the last axis.
        level_sizes: per level int32 / int64 [2] (H_l, W_l).
        locations: float32 [B, Lq, M, L, P, 2] (x, y) in [0, 1] of each level's map (0 = left/top edge).
        weights: float32 [B, Lq, M, L, P] (softmax over (L, P)).
    Returns:
        float32 [B, Lq, M * D].
    """
    if NATIVE.usable(locations, weights, *values):
        heads = locations.shape[2]
        # all levels as one [B, S, M, D] tensor (S = every level's positions): the layout the operator reads
        # (0: that axis's size, also when a traced graph has it unknown)
        value = paddle.concat(list(values), 1).reshape([0, 0, heads, values[0].shape[2] // heads])
        return NATIVE(value, paddle.stack(list(level_sizes)), locations, weights)
    return grid_sample_formulation(values, level_sizes, locations, weights)


def grid_sample_formulation(values: Sequence[paddle.Tensor], level_sizes: Sequence[paddle.Tensor],
                            locations: paddle.Tensor, weights: paddle.Tensor) -> paddle.Tensor:
    """`deformable_sample` with one paddle grid_sample per level (the reference; portable graphs use it)."""
    num_queries, heads, levels, points = locations.shape[1:5]
    head_dim = values[0].shape[2] // heads
    grids = 2.0 * locations - 1.0
    sampled = []
    for level, (value, size) in enumerate(zip(values, level_sizes)):
        value = value.transpose([0, 2, 1]).reshape([-1, head_dim, size[0], size[1]])  # [B*M, D, H, W]
        grid = grids[:, :, :, level].transpose([0, 2, 1, 3, 4]).flatten(0, 1)  # [B*M, Lq, P, 2]
        sampled.append(F.grid_sample(value, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = weights.transpose([0, 2, 1, 3, 4]).reshape([-1, 1, num_queries, levels * points])
    mixed = (paddle.stack(sampled, axis=-2).flatten(-2) * weights).sum(-1)  # [B*M, D, Lq]
    return mixed.reshape([-1, heads * head_dim, num_queries]).transpose([0, 2, 1])


class MSDeformableAttention(nn.Layer):
    """Deformable cross-attention from queries to a multi-level feature memory.

    Args:
        embed_dim: query / value width C.
        num_heads: M (C divisible by M).
        num_levels: L feature levels.
        num_points: P sampling points per head and level.
    """

    def __init__(self, embed_dim: int = 256, num_heads: int = 8, num_levels: int = 3,
                 num_points: int = 4) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.num_levels, self.num_points = num_levels, num_points
        samples = num_heads * num_levels * num_points
        self.sampling_offsets = nn.Linear(embed_dim, samples * 2)
        self.attention_weights = nn.Linear(embed_dim, samples)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        """Offsets start as rays in M evenly spread directions, point k at distance k; uniform weights."""
        zeros = nn.initializer.Constant(0.0)
        zeros(self.sampling_offsets.weight)
        angles = paddle.arange(self.num_heads, dtype="float32") * (2.0 * math.pi / self.num_heads)
        directions = paddle.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True)
        steps = paddle.arange(1, self.num_points + 1, dtype="float32").reshape([1, 1, -1, 1])
        rays = directions.reshape([self.num_heads, 1, 1, 2]).tile([1, self.num_levels, self.num_points, 1])
        self.sampling_offsets.bias.set_value((rays * steps).flatten())
        zeros(self.attention_weights.weight)
        zeros(self.attention_weights.bias)
        for linear in (self.value_proj, self.output_proj):
            nn.initializer.XavierUniform()(linear.weight)
            zeros(linear.bias)

    def forward(self, query: paddle.Tensor, reference_boxes: paddle.Tensor,
                memory: Sequence[paddle.Tensor], level_sizes: Sequence[paddle.Tensor]) -> paddle.Tensor:
        """Attend.

        Args:
            query: float32 [B, Lq, C] (content + position embedding).
            reference_boxes: float32 [B, Lq, 1, 4] (cx, cy, w, h) normalised to the padded image.
            memory: per level float32 [B, H_l * W_l, C], row-major over (y, x).
            level_sizes: per level int32 [2] (H_l, W_l).
        Returns:
            float32 [B, Lq, C].
        """
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        values: List[paddle.Tensor] = [self.value_proj(level) for level in memory]  # [B, H*W, C]
        num_queries = query.shape[1]
        offsets = self.sampling_offsets(query).reshape([-1, num_queries, heads, levels, points, 2])
        weights = self.attention_weights(query).reshape([-1, num_queries, heads, levels * points])
        weights = F.softmax(weights).reshape([-1, num_queries, heads, levels, points])
        centre = reference_boxes[:, :, None, :, None, :2]
        half_size = reference_boxes[:, :, None, :, None, 2:] * 0.5
        locations = centre + offsets / points * half_size
        return self.output_proj(deformable_sample(values, level_sizes, locations, weights))
