"""Multi-head scaled dot-product attention with one packed input projection (the DETR family's encoder and
decoder self-attention).

Parameter names are an external contract: `in_proj_weight` [d, 3d] (query, key, value columns in that order),
`in_proj_bias` [3d], `out_proj.weight` / `.bias`, as in PaddleDetection's state_dict
(`neck.encoder.0.layers.0.self_attn.*`, `transformer.decoder.layers.0.self_attn.*`).
"""
from typing import Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant, XavierUniform

from ...errors import ConfigError


class MultiHeadAttention(nn.Layer):
    """softmax(q k^T / sqrt(d / heads) + mask) v per head, heads concatenated and projected.

    Args:
        embed_dim: d, the width of queries, keys and values (all equal).
        num_heads: heads; d must be divisible by it.
        dropout: dropout on the attention weights (training only).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ConfigError(f"attention width {embed_dim} is not divisible by its {num_heads} heads")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.head_dim = embed_dim // num_heads
        self.in_proj_weight = self.create_parameter([embed_dim, 3 * embed_dim],
                                                    attr=ParamAttr(initializer=XavierUniform()))
        self.in_proj_bias = self.create_parameter([3 * embed_dim], attr=ParamAttr(initializer=Constant(0.0)),
                                                  is_bias=True)
        self.out_proj = nn.Linear(embed_dim, embed_dim, weight_attr=ParamAttr(initializer=XavierUniform()),
                                  bias_attr=ParamAttr(initializer=Constant(0.0)))

    def forward(self, query: paddle.Tensor, key: Optional[paddle.Tensor] = None,
                value: Optional[paddle.Tensor] = None,
                attn_mask: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        """Attend.

        Args:
            query: [B, Lq, d]; key, value: [B, Lk, d] (default: the query).
            attn_mask: broadcastable to [B, heads, Lq, Lk]; bool (True = may attend) or float (added to the
                logits: 0 or -inf).
        Returns:
            [B, Lq, d].
        """
        key = query if key is None else key
        value = query if value is None else value
        d = self.embed_dim
        if key is query:  # self-attention with shared query/key input (q = k = x + pos): one matmul for both
            q, k = paddle.split(self._project(query, 0, 2 * d), 2, axis=-1)
        else:
            q, k = self._project(query, 0, d), self._project(key, d, 2 * d)
        v = self._project(value, 2 * d, 3 * d)
        q, k, v = (self._split_heads(t) for t in (q, k, v))
        logits = paddle.matmul(q, k, transpose_y=True) * (float(self.head_dim) ** -0.5)
        if attn_mask is not None:
            if attn_mask.dtype == paddle.bool:
                attn_mask = paddle.where(attn_mask, paddle.zeros([1], logits.dtype),
                                         paddle.full([1], float("-inf"), logits.dtype))
            logits = logits + attn_mask.astype(logits.dtype)
        weights = F.softmax(logits, axis=-1)
        if self.dropout and self.training:
            weights = F.dropout(weights, self.dropout, training=True)
        out = paddle.matmul(weights, v).transpose([0, 2, 1, 3])
        return self.out_proj(out.reshape([0, 0, d]))

    def _project(self, x: paddle.Tensor, start: int, stop: int) -> paddle.Tensor:
        return F.linear(x, self.in_proj_weight[:, start:stop], self.in_proj_bias[start:stop])

    def _split_heads(self, x: paddle.Tensor) -> paddle.Tensor:
        """[B, L, d] -> [B, heads, L, d / heads]."""
        return x.reshape([0, 0, self.num_heads, self.head_dim]).transpose([0, 2, 1, 3])
