"""SOLOv2 inference post-processing: grid cells -> scored candidate masks -> Matrix NMS -> masks and boxes
in original image pixels. Batched over images (no loop over images, candidates or classes).

Paddle Inference's oneDNN kernels fail on zero-size tensors, so one placeholder candidate rides along
from the first step to the last: it belongs to a virtual image N (so it never meets a real candidate in
NMS or top-k), has class C, score -1 and an all-zero kernel, passes every filter, and is removed by a
gather at the very end.
"""
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import paddle

from ..ops.bilinear import lerp_rows, source_positions
from ..ops.matrix_nms import matrix_nms
from ..ops.nms import top_k_per_image

LEVEL_STRIDES = (8, 8, 16, 32, 32)  # minimum mask area (in mask-feature pixels) of a level's candidates
MASK_STRIDE = 4  # mask features are at 1/4 of the padded input


@dataclass
class SOLOv2PostProcess:
    """PaddleDetection's SOLOv2Head / MaskMatrixNMS inference settings."""

    score_threshold: float = 0.1
    mask_threshold: float = 0.5
    update_threshold: float = 0.05
    pre_nms_top_n: int = 500
    post_nms_top_n: int = 100
    kernel: str = "gaussian"
    sigma: float = 2.0


def _cell_strides(num_grids: Sequence[int]) -> np.ndarray:
    return np.concatenate([np.full(g * g, s, "float32") for g, s in zip(num_grids, LEVEL_STRIDES)])


def _take(rows: Dict[str, paddle.Tensor], index: paddle.Tensor) -> Dict[str, paddle.Tensor]:
    return {k: paddle.gather(v, index) for k, v in rows.items()}


def _kept(mask: paddle.Tensor, placeholder: paddle.Tensor) -> paddle.Tensor:
    return paddle.nonzero(paddle.logical_or(mask, placeholder)).flatten()


def candidates(cate_probs: List[paddle.Tensor], kernels: List[paddle.Tensor], mask_feat: paddle.Tensor,
               num_grids: Sequence[int], post: SOLOv2PostProcess) -> Dict[str, paddle.Tensor]:
    """Cells and classes scoring above the threshold, with their mask probabilities [K, h * w], the
    placeholder last (see the module docstring).

    Args:
        cate_probs: per level float32 [N, C, S, S] class probabilities (after points_nms);
        kernels: per level float32 [N, E, S, S]; mask_feat: float32 [N, E, h, w]; num_grids: S per level.
    """
    num_images = paddle.shape(mask_feat)[0]
    num_classes = cate_probs[0].shape[1]
    channels = mask_feat.shape[1]
    probs = paddle.concat([p.flatten(2).transpose([0, 2, 1]) for p in cate_probs], axis=1)  # [N, P, C]
    kern = paddle.concat([k.flatten(2).transpose([0, 2, 1]) for k in kernels], axis=1)  # [N, P, E]
    cells = probs.shape[1]
    flat = probs.flatten()
    found = paddle.nonzero(flat > post.score_threshold).flatten()
    index = paddle.concat([found, paddle.zeros([1], "int64")])
    placeholder = paddle.arange(0, paddle.shape(index)[0], dtype="int64") == paddle.shape(index)[0] - 1
    image = index // (cells * num_classes)
    cell = (index // num_classes) % cells
    kernel = paddle.gather(kern.reshape([-1, channels]), image * cells + cell)
    kernel = kernel * paddle.logical_not(placeholder).astype(kernel.dtype).unsqueeze(1)
    feats = mask_feat.flatten(2).transpose([1, 0, 2]).reshape([channels, -1])  # [E, N * hw]
    # every kernel on every image's features, then each its own image's row: no loop over images
    logits = paddle.matmul(kernel, feats).reshape([paddle.shape(index)[0] * num_images, -1])
    own = paddle.arange(0, paddle.shape(index)[0], dtype="int64") * num_images.astype("int64") + image
    logits = paddle.gather(logits, own)
    strides = paddle.to_tensor(_cell_strides(num_grids))
    return {"placeholder": placeholder,
            "image": paddle.where(placeholder, paddle.zeros_like(image) + num_images.astype("int64"), image),
            "label": paddle.where(placeholder, paddle.full_like(image, num_classes), index % num_classes),
            "score": paddle.where(placeholder, paddle.full([1], -1.0, flat.dtype),
                                  paddle.gather(flat, index)),
            "stride": paddle.gather(strides, cell), "probs": paddle.nn.functional.sigmoid(logits)}


def select(rows: Dict[str, paddle.Tensor], num_images: paddle.Tensor,
           post: SOLOv2PostProcess) -> Tuple[Dict[str, paddle.Tensor], paddle.Tensor]:
    """Mask-area filter, mask scoring, Matrix NMS, thresholds and top-k: (kept rows grouped by image,
    score descending, placeholder last; counts int32 [N + 1])."""
    masks = (rows["probs"] > post.mask_threshold).astype("float32")
    area = masks.sum(axis=1)
    keep = _kept(area > rows["stride"], rows["placeholder"])
    rows, masks, area = _take(rows, keep), paddle.gather(masks, keep), paddle.gather(area, keep)
    mask_score = (rows["probs"] * masks).sum(axis=1) / area.clip(min=1.0)
    rows["score"] = paddle.where(rows["placeholder"], rows["score"], rows["score"] * mask_score)
    order, _ = top_k_per_image(rows["score"], rows["image"], num_images + 1, post.pre_nms_top_n)
    rows, masks, area = _take(rows, order), paddle.gather(masks, order), paddle.gather(area, order)
    decayed = matrix_nms(masks, area, rows["label"], rows["score"], rows["image"], post.kernel, post.sigma)
    rows["score"] = paddle.where(rows["placeholder"], rows["score"], decayed)
    rows = _take(rows, _kept(rows["score"] >= post.update_threshold, rows["placeholder"]))
    order, counts = top_k_per_image(rows["score"], rows["image"], num_images + 1, post.post_nms_top_n)
    return _take(rows, order), counts


def masks_to_original(probs: paddle.Tensor, feat_size: Tuple[paddle.Tensor, paddle.Tensor],
                      resized: paddle.Tensor, original: paddle.Tensor, canvas: paddle.Tensor,
                      threshold: float) -> paddle.Tensor:
    """Mask probabilities at the mask features' size -> uint8 0/1 masks in original pixels.

    As PaddleDetection: upsample x4 to the padded input, crop to the resized image, resize to the original
    size (bilinear, align_corners False), then threshold. Separable: columns, then rows.

    Args:
        probs: float32 [K, h, w]; feat_size: (h, w); resized: float32 [K, 2] the row's image size after
            resizing (h, w), truncated to integers; original: float32 [K, 2] its original size; canvas:
            int32 [2] the output size (Hm, Wm), at least every original size.
    Returns:
        uint8 [K, Hm, Wm]; pixels outside a row's image are 0.
    """
    count = paddle.shape(probs)[0]
    # columns first (on the transposed maps, while they are still h rows high), then rows
    probs = probs.transpose([0, 2, 1])
    for axis in (1, 0):
        small = feat_size[axis].astype("float32") * paddle.ones([count], "float32")
        up = small * MASK_STRIDE
        probs = lerp_rows(probs, source_positions(up.astype("int32")[0], small, small / up), small)
        crop, out = resized[:, axis], original[:, axis]
        probs = lerp_rows(probs, source_positions(canvas[axis], crop, crop / out), crop)
        if axis == 1:
            probs = probs.transpose([0, 2, 1])
    inside_y = paddle.arange(0, canvas[0], dtype="float32").unsqueeze(0) < original[:, 0:1]
    inside_x = paddle.arange(0, canvas[1], dtype="float32").unsqueeze(0) < original[:, 1:2]
    inside = paddle.logical_and(inside_y.unsqueeze(2), inside_x.unsqueeze(1))
    return paddle.logical_and(probs > threshold, inside).astype("uint8")


def mask_boxes(masks: paddle.Tensor) -> paddle.Tensor:
    """Tight boxes of uint8 [K, H, W] masks: float32 [K, 4] x1, y1, x2, y2 (pixel edges: a one-pixel mask at
    (x, y) is (x, y, x + 1, y + 1)); all zero for an empty mask."""
    rows = masks.astype("int32").max(axis=2)  # [K, H]
    cols = masks.astype("int32").max(axis=1)  # [K, W]
    y1 = paddle.argmax(rows, axis=1)
    x1 = paddle.argmax(cols, axis=1)
    # last set row / column + 1, as the largest (index + 1) among set ones; not argmax over a flipped
    # axis, which paddle2onnx cannot map when the axis length is dynamic
    y2 = (rows * paddle.arange(1, paddle.shape(rows)[1] + 1, dtype="int32")).max(axis=1).astype("int64")
    x2 = (cols * paddle.arange(1, paddle.shape(cols)[1] + 1, dtype="int32")).max(axis=1).astype("int64")
    nonempty = rows.max(axis=1).astype("float32")
    return paddle.stack([x1, y1, x2, y2], axis=1).astype("float32") * nonempty.unsqueeze(1)
