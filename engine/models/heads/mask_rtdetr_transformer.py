"""The Mask-RT-DETR transformer (https://arxiv.org/abs/2304.08069 with Mask DINO's mask branch,
https://arxiv.org/abs/2206.02777): input projection, query selection, denoising, decoder, shared heads.

Parameter names are an external contract: `input_proj`, `decoder`, `denoising_class_embed`,
`query_pos_head`, `mask_query_head`, `enc_output`, `dec_norm`, `score_head`, `bbox_head` (in this order)
reproduce PaddleDetection's `transformer.*` state_dict (MaskRTDETR).
"""
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..layers.mlp import MLP
from ..ops.batch_gather import gather_rows
from ..ops.box_format import inverse_sigmoid, mask_to_cxcywh
from ..ops.denoising import DenoisingMeta, denoising_queries
from .mask_rtdetr_decoder import DecoderHeads, DecoderMemory, DecoderOutput, MaskTransformerDecoder

Predictions = Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]  # logits [B,Q,K], boxes [B,Q,4], masks


@dataclass
class DecoderConfig:
    """Decoder knobs (defaults = PaddleDetection's Mask-RT-DETR configs)."""

    hidden_dim: int = 256  # decoder width C
    num_queries: int = 300  # matching queries Q
    num_heads: int = 8
    num_layers: int = 6
    ffn_dim: int = 1024
    num_points: int = 4  # deformable sampling points per head and level
    num_denoising: int = 100  # denoising query budget in training (0 = off)
    label_noise_ratio: float = 0.5
    box_noise_scale: float = 1.0


@dataclass
class TransformerOutput:
    """Everything the loss needs (training) or post-processing reads (`decoder`, inference).

    decoder: per-layer outputs (matching and, in training, denoising queries: denoising first).
    encoder: the selected queries' predictions before decoding (logits, boxes, masks).
    initial: predictions of the decoder's input queries (training with denoising), else None.
    denoising: where the denoising queries are, or None.
    """

    decoder: DecoderOutput
    encoder: Predictions
    initial: Optional[Predictions]
    denoising: Optional[DenoisingMeta]


class MaskRTDETRTransformer(nn.Layer):
    """Query selection from the encoder memory, then a deformable decoder predicting classes, boxes and
    masks (query embeddings x prototype maps) at every layer.

    Args:
        num_classes: K foreground classes.
        in_channels: channels of each input level (the encoder's outputs, strides 8, 16, 32).
        num_prototypes: mask prototype channels of the encoder's mask feature.
        cfg: decoder knobs.
        eps: anchors closer than eps to the image border are not selectable.
    """

    def __init__(self, num_classes: int, in_channels: Sequence[int], num_prototypes: int,
                 cfg: Optional[DecoderConfig] = None, eps: float = 1e-2) -> None:
        super().__init__()
        cfg = cfg or DecoderConfig()
        hidden = cfg.hidden_dim
        self.cfg, self.num_classes, self.eps = cfg, num_classes, eps
        self.num_levels = len(in_channels)
        self.input_proj = nn.LayerList([
            nn.Sequential(("conv", nn.Conv2D(c, hidden, 1, bias_attr=False)),
                          ("norm", nn.BatchNorm2D(hidden)))
            for c in in_channels])
        self.decoder = MaskTransformerDecoder(cfg.num_layers, d_model=hidden, n_head=cfg.num_heads,
                                              dim_feedforward=cfg.ffn_dim, n_levels=self.num_levels,
                                              n_points=cfg.num_points)
        self.denoising_class_embed = nn.Embedding(num_classes, hidden,
                                                  weight_attr=nn.initializer.Normal(0.0, 1.0))
        self.query_pos_head = MLP(4, 2 * hidden, hidden, num_layers=2)
        self.mask_query_head = MLP(hidden, hidden, num_prototypes, num_layers=3)
        self.enc_output = nn.Sequential(nn.Linear(hidden, hidden), nn.LayerNorm(hidden))
        self.dec_norm = nn.LayerNorm(hidden)
        self.score_head = nn.Linear(hidden, num_classes)
        self.bbox_head = MLP(hidden, hidden, 4, num_layers=3)
        self._init_weights()

    def _init_weights(self) -> None:
        bound = 1.0 / math.sqrt(self.score_head.weight.shape[0])
        nn.initializer.Uniform(-bound, bound)(self.score_head.weight)
        nn.initializer.Constant(-math.log((1 - 0.01) / 0.01))(self.score_head.bias)  # prior probability 0.01
        nn.initializer.Constant(0.0)(self.bbox_head.layers[-1].weight)
        nn.initializer.Constant(0.0)(self.bbox_head.layers[-1].bias)
        xavier = nn.initializer.XavierUniform()
        enc_linear = self.enc_output[0]
        bound = 1.0 / math.sqrt(enc_linear.weight.shape[0])
        nn.initializer.Uniform(-bound, bound)(enc_linear.bias)
        xavier(enc_linear.weight)
        for layer in self.query_pos_head.layers:
            xavier(layer.weight)
        for proj in self.input_proj:
            xavier(proj[0].weight)

    def forward(self, feats: Sequence[paddle.Tensor], mask_feat: paddle.Tensor,
                targets: Optional[Tuple[List[paddle.Tensor], List[paddle.Tensor]]] = None
                ) -> TransformerOutput:
        """Decode.

        Args:
            feats: the encoder's levels, float32 [B, C_l, H_l, W_l] (strides 8, 16, 32).
            mask_feat: float32 [B, num_prototypes, Hm, Wm] (stride 4).
            targets: training only: per image class indices int64 [M_i] and boxes float32 [M_i, 4]
                (cx, cy, w, h) normalised to the padded image, for denoising queries.
        """
        memory = self._memory(feats)
        dn = None
        if self.training and targets is not None:
            cfg = self.cfg
            dn = denoising_queries(targets[0], targets[1], self.denoising_class_embed.weight,
                                   cfg.num_queries, cfg.num_denoising, cfg.label_noise_ratio,
                                   cfg.box_noise_scale)
        heads = DecoderHeads(self.bbox_head, self.query_pos_head, lambda q: self.class_and_mask(q, mask_feat))
        target, boxes_unact, encoder = self._select_queries(memory, heads)
        if dn is not None:
            target = paddle.concat([dn.embed, target], 1)
            boxes_unact = paddle.concat([dn.boxes_unact, boxes_unact], 1)
        initial = None
        if dn is not None:
            logits, masks = heads.class_and_mask(target)
            initial = (logits, F.sigmoid(boxes_unact), masks)
        decoded = self.decoder(target, boxes_unact.detach(), memory, heads,
                               dn.attn_mask if dn is not None else None)
        return TransformerOutput(decoded, encoder, initial, dn.meta if dn is not None else None)

    def class_and_mask(self, query: paddle.Tensor,
                       mask_feat: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """Class logits [B, Q, K] and mask logits [B, Q, Hm, Wm] of query features [B, Q, C]."""
        query = self.dec_norm(query)
        logits = self.score_head(query)
        embed = self.mask_query_head(query)  # [B, Q, P]
        shape = paddle.shape(mask_feat)
        masks = paddle.bmm(embed, mask_feat.flatten(2))
        return logits, masks.reshape([shape[0], -1, shape[2], shape[3]])

    def _memory(self, feats: Sequence[paddle.Tensor]) -> DecoderMemory:
        """Project every level to the decoder width and flatten it to [B, H_l * W_l, C]."""
        if len(feats) != self.num_levels:
            raise ValueError(f"the transformer takes {self.num_levels} feature levels, got {len(feats)}")
        levels, sizes = [], []
        for proj, feat in zip(self.input_proj, feats):
            feat = proj(feat)
            sizes.append(paddle.shape(feat)[2:4])
            levels.append(feat.flatten(2).transpose([0, 2, 1]))
        return DecoderMemory(levels, sizes)

    def _select_queries(self, memory: DecoderMemory, heads: DecoderHeads
                        ) -> Tuple[paddle.Tensor, paddle.Tensor, Predictions]:
        """The Q best-scoring memory positions become the queries; their masks give the reference boxes.

        Returns the query content [B, Q, C] (detached), the reference boxes as logits [B, Q, 4] (boxes
        around the selected queries' masks: mask-enhanced anchors), and the selected queries' own
        predictions (logits, boxes from the encoder head, masks) for the encoder loss.
        """
        anchors, valid = self._anchors(memory.sizes)
        flat = paddle.concat(memory.levels, 1)
        flat = paddle.where(valid, flat, paddle.zeros([1], flat.dtype))
        if paddle.in_dynamic_mode() and flat.shape[1] < self.cfg.num_queries:
            raise ValueError(f"the input has {flat.shape[1]} feature positions over all levels, fewer than "
                             f"num_queries={self.cfg.num_queries}: use larger images or fewer queries")
        output_memory = self.enc_output(flat)
        scores = self.score_head(output_memory)
        boxes_unact = self.bbox_head(output_memory) + anchors
        _, index = paddle.topk(scores.max(-1), self.cfg.num_queries, axis=1)  # [B, Q]
        target = gather_rows(output_memory, index)
        selected_boxes = gather_rows(boxes_unact, index)
        logits, masks = heads.class_and_mask(target)
        encoder = (logits, F.sigmoid(selected_boxes), masks)
        reference = inverse_sigmoid(mask_to_cxcywh(masks > 0))
        return target.detach(), reference, encoder

    def _anchors(self, sizes: Sequence[paddle.Tensor], cell: float = 0.05
                 ) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """Anchor boxes as logits [1, S, 4] (cell centres; size cell * 2^level) over all levels' positions,
        and bool [1, S, 1] True where the anchor lies inside (eps, 1 - eps); outside anchors are +inf."""
        anchors = []
        for level, size in enumerate(sizes):
            h, w = size[0], size[1]
            ys, xs = paddle.meshgrid(paddle.arange(h, dtype="float32"), paddle.arange(w, dtype="float32"))
            centre = (paddle.stack([xs, ys], -1) + 0.5) / paddle.stack([w, h]).astype("float32")
            extent = paddle.full_like(centre, cell * 2.0 ** level)
            anchors.append(paddle.concat([centre, extent], -1).reshape([1, -1, 4]))
        anchors = paddle.concat(anchors, 1)
        valid = ((anchors > self.eps) & (anchors < 1 - self.eps)).all(-1, keepdim=True)
        logits = paddle.log(anchors / (1 - anchors))
        return paddle.where(valid, logits, paddle.full([1], float("inf"))), valid
