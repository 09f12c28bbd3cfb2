"""DETR-style post-processing: the best (query, class) pairs become detections, with boxes and masks in
original image pixels (PaddleDetection's DETRPostProcess with focal scores and masks, for any batch).

No NMS: each image keeps exactly `num_top` detections, so exported graphs never make empty tensors.
"""
from typing import Dict

import paddle
import paddle.nn.functional as F

from .batch_gather import gather_rows
from .box_format import cxcywh_to_xyxy


def top_query_detections(logits: paddle.Tensor, boxes: paddle.Tensor, masks: paddle.Tensor,
                         im_shape: paddle.Tensor, scale_factor: paddle.Tensor, pad_shape: paddle.Tensor,
                         num_top: int = 100, mask_threshold: float = 0.5) -> Dict[str, paddle.Tensor]:
    """Detections of a batch.

    Args:
        logits: float32 [B, Q, K] class logits (sigmoid scores).
        boxes: float32 [B, Q, 4] (cx, cy, w, h) normalised to the padded input.
        masks: float32 [B, Q, Hm, Wm] mask logits covering the padded input.
        im_shape: float32 [B, 2] (h, w) resized, before padding; scale_factor: float32 [B, 2] resized /
            original; pad_shape: int32 [2] (H, W) of the padded input.
        num_top: detections per image (at most Q * K).
        mask_threshold: a pixel belongs to the mask when its probability is above this.
    Returns:
        bbox float32 [B * num_top, 6] (class, score, x1, y1, x2, y2) in original pixels, image by image,
        best first; bbox_num int32 [B]; mask uint8 [B * num_top, Hmax, Wmax] (the largest original size
        in the batch; zero outside each image).
    """
    num_classes = logits.shape[-1]
    scores, index = paddle.topk(F.sigmoid(logits).flatten(1), num_top, axis=-1)  # [B, k]
    labels = index % num_classes
    query = index // num_classes
    picked = gather_rows(boxes, query)
    original = paddle.floor(im_shape / scale_factor + 0.5)  # PaddleDetection's rounding
    scale = original * (pad_shape.astype("float32") / im_shape)  # normalised padded -> original pixels
    scale_xyxy = paddle.concat([scale[:, 1:2], scale[:, 0:1], scale[:, 1:2], scale[:, 0:1]], axis=-1)
    xyxy = cxcywh_to_xyxy(picked) * scale_xyxy.unsqueeze(1)
    bbox = paddle.concat([labels.unsqueeze(-1).astype("float32"), scores.unsqueeze(-1), xyxy], axis=-1)
    picked_masks = gather_rows(masks, query)
    full = resize_to_original(picked_masks, im_shape, pad_shape, original, mask_threshold)
    batch = paddle.shape(logits)[0]
    return {"bbox": bbox.reshape([-1, 6]), "bbox_num": paddle.full([batch], num_top, "int32"),
            "mask": full.flatten(0, 1)}


def resize_to_original(masks: paddle.Tensor, im_shape: paddle.Tensor, pad_shape: paddle.Tensor,
                       original: paddle.Tensor, threshold: float) -> paddle.Tensor:
    """Binarised full-image masks: each image's unpadded part of `masks` resized bilinearly
    (align_corners=False, edge-clamped, as `F.interpolate`) to its original size.

    Args:
        masks: float32 [B, k, Hm, Wm] logits over the padded input; im_shape float32 [B, 2];
        pad_shape int32 [2]; original float32 [B, 2] (h, w) original sizes.
    Returns:
        uint8 [B, k, Hmax, Wmax], 1 where sigmoid(resized logit) > threshold inside the image.
    """
    size = paddle.shape(masks)[2:4]
    canvas = original.max(axis=0).astype("int32")
    extent = size.astype("float32") * im_shape / pad_shape.astype("float32")  # [B, 2] unpadded mask size
    wy = _axis_weights(extent[:, 0], original[:, 0], size[0], canvas[0])  # [B, Hmax, Hm]
    wx = _axis_weights(extent[:, 1], original[:, 1], size[1], canvas[1])  # [B, Wmax, Wm]
    full = paddle.matmul(paddle.matmul(wy.unsqueeze(1), masks), wx.unsqueeze(1), transpose_y=True)
    keep = F.sigmoid(full) > threshold
    if threshold < 0.5:
        # outside the image every weight is 0, so full is exactly 0 and sigmoid 0.5: above such a threshold
        # (at 0.5 and over it is not, and the [B, k, Hmax, Wmax] broadcast AND, slow on CPU, is skipped)
        inside = (wy.sum(-1).unsqueeze(-1) * wx.sum(-1).unsqueeze(-2)) > 0  # [B, Hmax, Wmax]
        keep = keep & inside.unsqueeze(1)
    return keep.astype("uint8")


def _axis_weights(extent: paddle.Tensor, out_size: paddle.Tensor, cells: paddle.Tensor,
                  canvas: paddle.Tensor) -> paddle.Tensor:
    """float32 [B, canvas, cells]: bilinear weights mapping `extent` mask cells onto `out_size` pixels.

    Output pixel p samples u = (p + 0.5) * extent / out_size - 0.5, clamped to [0, cells - 1]; rows at
    or beyond out_size are zero.
    """
    pixels = paddle.arange(canvas, dtype="float32").unsqueeze(0)  # [1, canvas]
    ratio = (extent / out_size).unsqueeze(1)
    u = ((pixels + 0.5) * ratio - 0.5).clip(min=0.0)
    u = paddle.minimum(u, cells.astype("float32") - 1.0)
    m = paddle.arange(cells, dtype="float32")
    weights = F.relu(1.0 - (u.unsqueeze(-1) - m).abs())
    inside = (pixels < out_size.unsqueeze(1)).astype("float32").unsqueeze(-1)
    return weights * inside
