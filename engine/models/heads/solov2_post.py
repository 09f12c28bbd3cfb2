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
               num_grids: Sequence[int], post: SOLOv2PostProcess
               ) -> Tuple[Dict[str, paddle.Tensor], paddle.Tensor]:
    """Cells and classes scoring above the threshold, the placeholder last (see the module docstring), and
    the mask logits of their cells.

    A cell's mask does not depend on the class, so each candidate cell's kernel is applied once (not once
    per class above the threshold), and only to its own image's features.

    Args:
        cate_probs: per level float32 [N, C, S, S] class probabilities (after points_nms);
        kernels: per level float32 [N, E, S, S]; mask_feat: float32 [N, E, h, w]; num_grids: S per level.
    Returns:
        (rows: per candidate placeholder bool, image / label / slot int64, score / stride float32 [K]; slot
        = the candidate's row of the mask logits; mask logits float32 [N * W, h * w], W = the most
        candidate cells of any image, rows past an image's cells unused).
    """
    num_images = paddle.shape(mask_feat)[0]
    num_classes = cate_probs[0].shape[1]
    channels = mask_feat.shape[1]
    probs = paddle.concat([p.flatten(2).transpose([0, 2, 1]) for p in cate_probs], axis=1)  # [N, P, C]
    kern = paddle.concat([k.flatten(2).transpose([0, 2, 1]) for k in kernels], axis=1)  # [N, P, E]
    cells = probs.shape[1]
    flat = probs.flatten()
    index = _with_placeholder(paddle.nonzero(flat > post.score_threshold).flatten())
    placeholder = _last(index)
    image = index // (cells * num_classes)
    cell = (index // num_classes) % cells
    # the cells with a candidate, image-major, and each candidate's position among them
    hit = (probs.max(axis=2) > post.score_threshold).flatten()  # [N * P]
    cell_index = _with_placeholder(paddle.nonzero(hit).flatten())
    cell_placeholder = _last(cell_index)
    position = paddle.gather(paddle.cumsum(hit.astype("int64")) - 1, image * cells + cell)
    position = paddle.where(placeholder, paddle.shape(cell_index)[0:1].astype("int64") - 1, position)
    kernel = paddle.gather(kern.reshape([-1, channels]), cell_index)
    kernel = kernel * paddle.logical_not(cell_placeholder).astype(kernel.dtype).unsqueeze(1)
    # the placeholder's zero kernel goes with the last image, so the cells stay ordered by image
    last_image = paddle.zeros_like(cell_index) + (num_images - 1).astype("int64")
    cell_image = paddle.where(cell_placeholder, last_image, cell_index // cells)
    logits, cell_slot = _own_image_logits(kernel, cell_image, mask_feat.flatten(2), num_images)
    strides = paddle.to_tensor(_cell_strides(num_grids))
    rows = {"placeholder": placeholder,
            "image": paddle.where(placeholder, paddle.zeros_like(image) + num_images.astype("int64"), image),
            "label": paddle.where(placeholder, paddle.full_like(image, num_classes), index % num_classes),
            "score": paddle.where(placeholder, paddle.full([1], -1.0, flat.dtype),
                                  paddle.gather(flat, index)),
            "stride": paddle.gather(strides, cell), "slot": paddle.gather(cell_slot, position)}
    return rows, logits


def _with_placeholder(found: paddle.Tensor) -> paddle.Tensor:
    return paddle.concat([found, paddle.zeros([1], "int64")])


def _last(index: paddle.Tensor) -> paddle.Tensor:
    return paddle.arange(0, paddle.shape(index)[0], dtype="int64") == paddle.shape(index)[0] - 1


def _own_image_logits(kernel: paddle.Tensor, image: paddle.Tensor, feats: paddle.Tensor,
                      num_images: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Each kernel applied to its own image's features only, as one batched matmul over images.

    Args:
        kernel: float32 [R, E] rows ordered by image; image: int64 [R]; feats: float32 [N, E, hw].
    Returns:
        (logits float32 [N * W, hw], image i's kernels in rows i * W ..., W = the most kernels of any
        image, unused rows 0; slot int64 [R] the row of each kernel).
    """
    count = paddle.shape(kernel)[0]
    images = paddle.arange(0, num_images, dtype="int64")
    per_image = (image.unsqueeze(0) == images.unsqueeze(1)).astype("int64").sum(axis=1)  # [N]
    starts = paddle.cumsum(per_image) - per_image
    width = per_image.max()
    slot = image * width + paddle.arange(0, count, dtype="int64") - paddle.gather(starts, image)
    slots = paddle.arange(0, num_images.astype("int64") * width, dtype="int64")
    slot_image, rank = slots // width, slots % width
    used = (rank < paddle.gather(per_image, slot_image)).astype(kernel.dtype).unsqueeze(1)
    source = paddle.minimum(paddle.gather(starts, slot_image) + rank, count.astype("int64") - 1)
    padded = (paddle.gather(kernel, source) * used).reshape([num_images, -1, paddle.shape(kernel)[1]])
    logits = paddle.matmul(padded, feats)  # [N, W, hw]
    return logits.reshape([-1, paddle.shape(feats)[2]]), slot


def select(rows: Dict[str, paddle.Tensor], logits: paddle.Tensor, num_images: paddle.Tensor,
           post: SOLOv2PostProcess) -> Tuple[Dict[str, paddle.Tensor], paddle.Tensor, paddle.Tensor]:
    """Mask-area filter, mask scoring, Matrix NMS, thresholds and top-k: (kept rows grouped by image,
    score descending, placeholder last; counts int32 [N + 1]; mask probabilities float32 [S, h * w] that
    the rows' `slot` index). Area and mask score are per mask row; masks are gathered per candidate only
    for the pre-NMS top-k."""
    probs = paddle.nn.functional.sigmoid(logits)
    fg = probs > post.mask_threshold
    slot_area = fg.astype("float32").sum(axis=1)
    slot_score = (probs * fg.astype("float32")).sum(axis=1) / slot_area.clip(min=1.0)
    area = paddle.gather(slot_area, rows["slot"])
    rows = _take(rows, _kept(area > rows["stride"], rows["placeholder"]))
    mask_score = paddle.gather(slot_score, rows["slot"])
    rows["score"] = paddle.where(rows["placeholder"], rows["score"], rows["score"] * mask_score)
    order, _ = top_k_per_image(rows["score"], rows["image"], num_images + 1, post.pre_nms_top_n)
    rows = _take(rows, order)
    masks = (paddle.gather(probs, rows["slot"]) > post.mask_threshold).astype("float32")
    decayed = matrix_nms(masks, paddle.gather(slot_area, rows["slot"]), rows["label"], rows["score"],
                         rows["image"], post.kernel, post.sigma)
    rows["score"] = paddle.where(rows["placeholder"], rows["score"], decayed)
    rows = _take(rows, _kept(rows["score"] >= post.update_threshold, rows["placeholder"]))
    order, counts = top_k_per_image(rows["score"], rows["image"], num_images + 1, post.post_nms_top_n)
    return _take(rows, order), counts, probs


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
