"""Selection ops on flat, image-concatenated detections: per-image top-k and multi-class NMS.

Everything is batched over images with tensor ops (no loop over images, classes or boxes), so the
same code runs eagerly and under `paddle.jit.to_static`.
"""
from typing import Tuple, Union

import paddle
import paddle.vision.ops as vops

from .box_coder import nonempty
from .graph_target import tracing_for_onnx

SENTINEL_SCORE = -1.0  # score of multiclass_nms's placeholder row; real scores are probabilities
LOWEST_FLOAT32 = -3.4e38  # a score threshold below every score (NMS inputs may be logits)
NO_LIMIT = 2 ** 31 - 1  # multiclass_nms3's nms_top_k: its -1 ("all") becomes ONNX's "keep none"


def segment_ids(counts: paddle.Tensor, total: Union[int, paddle.Tensor]) -> paddle.Tensor:
    """int64 [total]: the segment (image) of each row when rows are grouped by `counts` (int [N])."""
    ends = paddle.cumsum(counts.astype("int64"))
    rows = paddle.arange(0, total, dtype="int64")
    return (rows.unsqueeze(1) >= ends.unsqueeze(0)).astype("int64").sum(axis=1)


def nms_keep(boxes: paddle.Tensor, scores: paddle.Tensor, iou_threshold: float) -> paddle.Tensor:
    """`paddle.vision.ops.nms(boxes, iou_threshold, scores)`: int64 [K] indices of the kept boxes (float32
    [M, 4] x1, y1, x2, y2; scores float32 [M]), best score first.

    Traced for ONNX (`graph_target.onnx_graph`), the same suppression through `multiclass_nms3` with one
    class and no score threshold, which paddle2onnx maps to ONNX NonMaxSuppression (`nms` has no mapping):
    the same boxes are kept (IoU without the +1 pixel offset, suppressed above the threshold).
    """
    if not tracing_for_onnx():
        return vops.nms(boxes, iou_threshold, scores)
    _, index, _ = paddle._C_ops.multiclass_nms3(boxes.unsqueeze(0), scores.reshape([1, 1, -1]), None,
                                                LOWEST_FLOAT32, NO_LIMIT, -1, iou_threshold, True, 1.0, -1)
    keep = index.flatten().astype("int64")
    return paddle.gather(keep, paddle.argsort(paddle.gather(scores, keep), descending=True, stable=True))


def top_k_per_image(scores: paddle.Tensor, image_ids: paddle.Tensor, num_images: Union[int, paddle.Tensor],
                    k: int) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Pick the k best rows of every image.

    Args:
        scores: float32 [M]; image_ids: int64 [M] image of each row; num_images: int, or int tensor [].
    Returns:
        (indices int64 [K] into the rows, grouped by image in order and by score descending within an
        image; counts int32 [num_images] = min(k, rows of that image)).
    """
    order = paddle.argsort(scores, descending=True)
    order = paddle.gather(order, paddle.argsort(paddle.gather(image_ids, order), stable=True))
    grouped_ids = paddle.gather(image_ids, order)
    images = paddle.arange(0, num_images, dtype="int64")
    counts = (image_ids.unsqueeze(0) == images.unsqueeze(1)).astype("int64").sum(axis=1)
    starts = paddle.cumsum(counts) - counts
    rank = paddle.arange(0, paddle.shape(order)[0], dtype="int64") - paddle.gather(starts, grouped_ids)
    keep = paddle.nonzero(rank < k).flatten()
    return paddle.gather(order, keep), counts.clip(max=k).astype("int32")


def multiclass_nms(boxes: paddle.Tensor, probs: paddle.Tensor, rois_num: paddle.Tensor,
                   score_threshold: float, nms_threshold: float,
                   keep_top_k: int, sentinel: bool = False,
                   return_rows: bool = False) -> Tuple[paddle.Tensor, ...]:
    """Per-class, per-image NMS over R-CNN outputs, then the `keep_top_k` best detections of each image.

    One `paddle.vision.ops.nms` call covers all images and classes: each (image, class) group is shifted
    to its own region of the plane (classes along x, images along y) so boxes of different groups
    never overlap.

    Args:
        boxes: float32 [R, Cb, 4] decoded boxes per RoI; Cb = C (class-specific) or 1 (shared by classes).
        probs: float32 [R, C] class probabilities (background column removed).
        rois_num: int [N] RoIs per image (rows of `boxes` are grouped by image).
    Returns:
        (detections float32 [K, 6] rows (class, score, x1, y1, x2, y2), image by image, score
        descending within an image; counts int32 [N]). With `sentinel`, the first image also holds a
        placeholder row (class 0, score -1, box (0, 0, 2, 2)) unless keep_top_k real detections push it
        out: K >= 1 whatever the scores, which Paddle Inference's oneDNN kernels need (they fail, or
        crash, on zero-size tensors); drop it with `drop_sentinel`. With `return_rows`, a third output:
        int64 [K] the row of `boxes` / `probs` each detection came from (0 for the placeholder).
    """
    num_classes = probs.shape[1]
    num_box_sets = boxes.shape[1]
    num_rois = paddle.shape(probs)[0]
    roi_image = segment_ids(rois_num, num_rois)
    candidate = paddle.logical_and(probs > score_threshold, nonempty(boxes))
    flat = paddle.nonzero(candidate.flatten()).flatten()
    roi = flat // num_classes
    cls = flat % num_classes
    box_index = roi * num_box_sets + cls if num_box_sets > 1 else roi
    cand_boxes = paddle.gather(boxes.reshape([-1, 4]), box_index)
    cand_scores = paddle.gather(probs.flatten(), flat)
    cand_image = paddle.gather(roi_image, roi)
    if sentinel:  # its own class column (num_classes) for NMS, so nothing suppresses it or is suppressed
        cls = paddle.concat([cls, paddle.full([1], num_classes, cls.dtype)])
        cand_boxes = paddle.concat([cand_boxes, paddle.to_tensor([[0.0, 0.0, 2.0, 2.0]], boxes.dtype)])
        cand_scores = paddle.concat([cand_scores, paddle.full([1], SENTINEL_SCORE, cand_scores.dtype)])
        cand_image = paddle.concat([cand_image, paddle.zeros([1], cand_image.dtype)])
        roi = paddle.concat([roi, paddle.zeros([1], roi.dtype)])
    # a zero appended so the max is defined when an image batch has no RoI at all
    span = paddle.concat([boxes.abs().flatten(), paddle.zeros([1], boxes.dtype)]).max() + 1.0
    shift_x = cls.astype("float32") * span
    shift_y = cand_image.astype("float32") * span
    shifted = cand_boxes + paddle.stack([shift_x, shift_y, shift_x, shift_y], axis=1)
    keep = nms_keep(shifted, cand_scores, nms_threshold)
    top, counts = top_k_per_image(paddle.gather(cand_scores, keep), paddle.gather(cand_image, keep),
                                  paddle.shape(rois_num)[0], keep_top_k)
    keep = paddle.gather(keep, top)
    dets = paddle.concat([(paddle.gather(cls, keep) % num_classes).astype("float32").unsqueeze(1),
                          paddle.gather(cand_scores, keep).unsqueeze(1),
                          paddle.gather(cand_boxes, keep)], axis=1)
    if return_rows:
        return dets, counts, paddle.gather(roi, keep)
    return dets, counts


def drop_sentinel(dets: paddle.Tensor, counts: paddle.Tensor,
                  *rows: paddle.Tensor) -> Tuple[paddle.Tensor, ...]:
    """Remove multiclass_nms's placeholder (first image, score < 0) from `dets` [K, >=2] (score in column
    1), `counts` int32 [N] and each of `rows` (tensors with K leading rows).

    Only gathers and integer arithmetic touch the possibly empty result (kernels oneDNN leaves alone).
    Returns (dets, counts, *rows).
    """
    is_sentinel = dets[:, 1] < 0
    keep = paddle.nonzero(paddle.logical_not(is_sentinel)).flatten()
    first = (paddle.arange(0, paddle.shape(counts)[0], dtype="int32") == 0).astype("int32")
    counts = counts - first * is_sentinel.astype("int32").sum().astype("int32")
    return (paddle.gather(dets, keep), counts) + tuple(paddle.gather(r, keep) for r in rows)
