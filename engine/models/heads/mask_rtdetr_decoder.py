"""The Mask-RT-DETR decoder: self-attention, deformable cross-attention, feed-forward; box refinement.

Parameter names are an external contract: `layers.<i>.{self_attn, norm1, cross_attn, norm2, linear1,
linear2, norm3}` reproduce PaddleDetection's `transformer.decoder.*` state_dict (MaskTransformerDecoder).
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..layers.attention import MultiHeadAttention
from ..ops.box_format import inverse_sigmoid
from ..ops.ms_deform_attn import MSDeformableAttention

# query features [B, Q, C] -> (class logits [B, Q, K], mask logits [B, Q, Hm, Wm])
ClassMaskHead = Callable[[paddle.Tensor], Tuple[paddle.Tensor, paddle.Tensor]]


@dataclass
class DecoderMemory:
    """What the queries attend to: per level float32 [B, H_l * W_l, C] and int32 [2] (H_l, W_l)."""

    levels: List[paddle.Tensor]
    sizes: List[paddle.Tensor]


@dataclass
class DecoderHeads:
    """The prediction heads the decoder shares with query selection (owned by the transformer)."""

    bbox_head: nn.Layer  # [B, Q, C] -> box logit deltas [B, Q, 4]
    query_pos_head: nn.Layer  # boxes [B, Q, 4] -> position embeddings [B, Q, C]
    class_and_mask: ClassMaskHead


class TransformerDecoderLayer(nn.Layer):
    """Post-norm decoder layer (dropout-free: every PaddleDetection config sets dropout 0).

    Args:
        d_model: width C; n_head: attention heads; dim_feedforward: FFN width;
        n_levels, n_points: deformable attention levels and points per head and level.
    """

    def __init__(self, d_model: int = 256, n_head: int = 8, dim_feedforward: int = 1024, n_levels: int = 3,
                 n_points: int = 4) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_head)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformableAttention(d_model, n_head, n_levels, n_points)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm3 = nn.LayerNorm(d_model)
        for linear in (self.linear1, self.linear2):
            bound = 1.0 / float(linear.weight.shape[0]) ** 0.5
            nn.initializer.Uniform(-bound, bound)(linear.bias)
            nn.initializer.XavierUniform()(linear.weight)

    def forward(self, target: paddle.Tensor, reference_boxes: paddle.Tensor, memory: DecoderMemory,
                attn_mask: Optional[paddle.Tensor], query_pos: paddle.Tensor) -> paddle.Tensor:
        """target [B, Q, C], reference_boxes [B, Q, 1, 4] (cx, cy, w, h in [0, 1]), attn_mask bool
        [Q, Q] (True = may attend) or None, query_pos [B, Q, C] -> [B, Q, C]."""
        query = target + query_pos
        target = self.norm1(target + self.self_attn(query, query, target, attn_mask=attn_mask))
        attended = self.cross_attn(target + query_pos, reference_boxes, memory.levels, memory.sizes)
        target = self.norm2(target + attended)
        return self.norm3(target + self.linear2(F.relu(self.linear1(target))))


@dataclass
class DecoderOutput:
    """Per decoder layer (training: every layer; inference: the last only): boxes float32 [B, Q, 4]
    (cx, cy, w, h in [0, 1]), class logits [B, Q, K], mask logits [B, Q, Hm, Wm]."""

    boxes: List[paddle.Tensor]
    logits: List[paddle.Tensor]
    masks: List[paddle.Tensor]


class MaskTransformerDecoder(nn.Layer):
    """`num_layers` decoder layers; each refines the boxes of the one before (iterative box refinement).

    Args:
        layer_args: keyword arguments of every TransformerDecoderLayer.
        num_layers: decoder depth.
    """

    def __init__(self, num_layers: int, **layer_args) -> None:
        super().__init__()
        self.layers = nn.LayerList([TransformerDecoderLayer(**layer_args) for _ in range(num_layers)])

    def forward(self, target: paddle.Tensor, boxes_unact: paddle.Tensor, memory: DecoderMemory,
                heads: DecoderHeads, attn_mask: Optional[paddle.Tensor] = None) -> DecoderOutput:
        """Decode.

        Args:
            target: float32 [B, Q, C] initial query content.
            boxes_unact: float32 [B, Q, 4] initial reference boxes, as logits (inverse sigmoid).
            memory: the projected multi-level features.
            heads: the shared prediction heads.
            attn_mask: bool [Q, Q] for denoising groups, or None.
        """
        out = DecoderOutput([], [], [])
        reference = F.sigmoid(boxes_unact)  # the detached input of each layer
        previous: Optional[paddle.Tensor] = None  # the previous layer's boxes, with gradient (training)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            query_pos = heads.query_pos_head(reference)
            target = layer(target, reference.unsqueeze(2), memory, attn_mask, query_pos)
            delta = heads.bbox_head(target)
            boxes = F.sigmoid(delta + inverse_sigmoid(reference))
            if self.training or i == last:
                logits, masks = heads.class_and_mask(target)
                out.logits.append(logits)
                out.masks.append(masks)
                # deeper layers' losses reach the previous layer's boxes too (DINO's look forward twice)
                graded = self.training and previous is not None
                out.boxes.append(F.sigmoid(delta + inverse_sigmoid(previous)) if graded else boxes)
            previous = boxes
            reference = boxes.detach() if self.training else boxes
        return out
