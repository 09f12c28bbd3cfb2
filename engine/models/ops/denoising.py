"""Denoising queries (DN-DETR, https://arxiv.org/abs/2203.01305) for DETR training.

Noised copies of the ground truth (labels flipped at random, boxes jittered) are fed to the decoder next
to the matching queries; the decoder learns to reconstruct the originals, which steadies matching early
in training. Copies come in groups; the attention mask keeps groups from seeing each other and the
matching queries from seeing any of them. All randomness is drawn from Paddle (docs/ENGINE.md).
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import paddle

from .box_format import inverse_sigmoid


@dataclass
class DenoisingMeta:
    """Where the denoising queries are and what they reconstruct.

    positive_idx: per image int64 [num_group * M_i]: query index of gt j in group g at g * M_i + j.
    num_group: copies of the ground truth.
    split: [denoising queries, matching queries] of the decoder's query axis.
    """

    positive_idx: List[paddle.Tensor]
    num_group: int
    split: List[int]


@dataclass
class DenoisingQueries:
    """Decoder inputs: class embeddings [B, Nd, C], unactivated boxes [B, Nd, 4] (cx, cy, w, h
    logits), attention mask bool [Nd + Q, Nd + Q] (True = may attend), and the meta data for the loss."""

    embed: paddle.Tensor
    boxes_unact: paddle.Tensor
    attn_mask: paddle.Tensor
    meta: DenoisingMeta


def denoising_queries(gt_class: Sequence[paddle.Tensor], gt_box: Sequence[paddle.Tensor],
                      class_embed: paddle.Tensor, num_queries: int, num_denoising: int = 100,
                      label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0
                      ) -> Optional[DenoisingQueries]:
    """Build noised ground-truth queries, or None when there is nothing to denoise.

    Args:
        gt_class: per image int64 [M_i] class indices.
        gt_box: per image float32 [M_i, 4] (cx, cy, w, h) normalised to the padded image.
        class_embed: float32 [num_classes, C], the class embedding table (`denoising_class_embed`).
        num_queries: matching queries Q (they follow the denoising ones).
        num_denoising: budget of denoising queries; groups = budget // max M_i (at least 1).
        label_noise_ratio: a label is replaced by a random class with probability ratio / 2.
        box_noise_scale: corners move by up to scale * (w / 2, h / 2) for the centre and scale * (w, h)
            for the size, uniformly.
    """
    counts = [int(c.shape[0]) for c in gt_class]
    max_gt = max(counts) if counts else 0
    if num_denoising <= 0 or max_gt == 0:
        return None
    num_classes = class_embed.shape[0]
    num_group = max(num_denoising // max_gt, 1)
    labels, boxes, real = _padded_targets(gt_class, gt_box, counts, max_gt, num_classes)
    labels = labels.tile([1, num_group])
    boxes = boxes.tile([1, num_group, 1])
    real = real.tile([1, num_group])
    batch, total = labels.shape
    positive_idx = [paddle.nonzero(real[i]).flatten() for i in range(batch)]
    if label_noise_ratio > 0:
        labels = _flip_labels(labels, real, label_noise_ratio * 0.5, num_classes)
    if box_noise_scale > 0:
        boxes = _jitter_boxes(boxes, box_noise_scale)
    boxes_unact = inverse_sigmoid(boxes)
    table = paddle.concat([class_embed, paddle.zeros([1, class_embed.shape[1]], class_embed.dtype)])
    embed = paddle.gather(table, labels.flatten(), axis=0).reshape([batch, total, -1])
    attn_mask = _attention_mask(total, max_gt, num_queries)
    return DenoisingQueries(embed, boxes_unact, attn_mask,
                            DenoisingMeta(positive_idx, num_group, [total, num_queries]))


def _padded_targets(gt_class: Sequence[paddle.Tensor], gt_box: Sequence[paddle.Tensor], counts: List[int],
                    max_gt: int, pad_class: int) -> Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
    """[B, max_gt] labels (padding = `pad_class`, whose embedding is zero), [B, max_gt, 4] boxes, and
    [B, max_gt] float 1 for real entries."""
    labels, boxes, real = [], [], []
    for cls, box, n in zip(gt_class, gt_box, counts):
        pad = max_gt - n
        labels.append(paddle.concat([cls.astype("int64").reshape([-1]),
                                     paddle.full([pad], pad_class, "int64")]))
        boxes.append(paddle.concat([box.astype("float32").reshape([-1, 4]), paddle.zeros([pad, 4])]))
        real.append(paddle.concat([paddle.ones([n]), paddle.zeros([pad])]))
    return paddle.stack(labels), paddle.stack(boxes), paddle.stack(real)


def _flip_labels(labels: paddle.Tensor, real: paddle.Tensor, probability: float,
                 num_classes: int) -> paddle.Tensor:
    """Replace real labels by a uniformly random class with `probability`."""
    flip = (paddle.rand(labels.shape) < probability).astype("float32") * real
    random_labels = paddle.randint(0, num_classes, labels.shape, dtype="int64")
    return paddle.where(flip > 0, random_labels, labels)


def _jitter_boxes(boxes: paddle.Tensor, scale: float) -> paddle.Tensor:
    """(cx, cy, w, h) + U(-1, 1) * scale * (w / 2, h / 2, w, h), clipped to [0, 1] by inverse_sigmoid."""
    size = boxes[..., 2:]
    spread = paddle.concat([size * 0.5, size], axis=-1) * scale
    return boxes + spread * (paddle.rand(boxes.shape) * 2.0 - 1.0)


def _attention_mask(num_denoising: int, group_size: int, num_queries: int) -> paddle.Tensor:
    """bool [Nd + Q, Nd + Q], True = may attend: a denoising query sees its own group and the matching
    queries; a matching query sees only matching queries."""
    total = num_denoising + num_queries
    index = paddle.arange(total)
    is_dn = index < num_denoising
    group = paddle.where(is_dn, index // group_size, paddle.full_like(index, -1))
    same_group = (group.unsqueeze(1) == group.unsqueeze(0)) & is_dn.unsqueeze(1)
    sees_matching = (~is_dn).unsqueeze(0).expand([total, total])
    return same_group | sees_matching
