"""Geometric and photometric transforms on one sample, as numpy/cv2 ops over all instances at once.

A sample is a dict: `image` uint8 [H, W, 3] RGB; `gt_bbox` float32 [M, 4] x1, y1, x2, y2; `gt_mask` uint8
[M, H, W]; `gt_class`, `is_crowd` int32 [M]; plus `im_id`, `ori_shape`. Masks and boxes move together.
"""
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np

from .batching import GT_KEYS
from .preprocess import Preprocess, normalize_permute_image, normalize_table, resized_size

Sample = Dict[str, np.ndarray]
_CV_MAX_CHANNELS = 512  # cv2.resize handles at most 512 channels per call


def target_size(height: int, width: int, short: int, max_size: int, keep_ratio: bool) -> Tuple[int, int]:
    """Output (h, w): short side `short` capped so the long side stays ≤ `max_size`, or (short, max_size)
    (the evaluation resize's rule, `preprocess.resized_size`)."""
    return resized_size(height, width, (short, max_size), keep_ratio)


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a [M, h, w] uint8 stack to [M, height, width]."""
    if masks.shape[0] == 0:
        return np.zeros((0, height, width), np.uint8)
    out = []
    for start in range(0, masks.shape[0], _CV_MAX_CHANNELS):
        chunk = np.ascontiguousarray(masks[start:start + _CV_MAX_CHANNELS].transpose(1, 2, 0))
        resized = cv2.resize(chunk, (width, height), interpolation=cv2.INTER_NEAREST)
        # contiguous [M, H, W]: later reductions over W are ~15x faster than on the strided view
        out.append(np.ascontiguousarray(resized.reshape(height, width, -1).transpose(2, 0, 1)))
    return np.concatenate(out, axis=0)


def resize(sample: Sample, short: int, max_size: int, keep_ratio: bool) -> Sample:
    """Resize image, masks and boxes; record `im_shape` and `scale_factor` (h, w) = resized / original."""
    h, w = sample["image"].shape[:2]
    new_h, new_w = target_size(h, w, short, max_size, keep_ratio)
    sy, sx = new_h / h, new_w / w
    sample["image"] = cv2.resize(sample["image"], (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if "gt_mask" in sample:
        sample["gt_mask"] = resize_masks(sample["gt_mask"], new_h, new_w)
        sample["gt_bbox"] = sample["gt_bbox"] * np.array([sx, sy, sx, sy], np.float32)
    sample["im_shape"] = np.array([new_h, new_w], np.float32)
    sample["scale_factor"] = np.array([sy, sx], np.float32)
    return sample


def hflip(sample: Sample) -> Sample:
    """Mirror image, masks and boxes left-right."""
    w = sample["image"].shape[1]
    sample["image"] = cv2.flip(sample["image"], 1)  # contiguous: later passes stay fast
    if "gt_mask" in sample:
        sample["gt_mask"] = sample["gt_mask"][:, :, ::-1]
        boxes = sample["gt_bbox"].copy()
        boxes[:, 0], boxes[:, 2] = w - sample["gt_bbox"][:, 2], w - sample["gt_bbox"][:, 0]
        sample["gt_bbox"] = boxes
    return sample


def normalize_permute(sample: Sample, mean: Sequence[float], std: Sequence[float]) -> Sample:
    """uint8 RGB HWC -> float32 CHW, (x / 255 - mean) / std, as the evaluation preprocessing does."""
    sample["image"] = normalize_permute_image(sample["image"], normalize_table(mean, std))
    return sample


def fit_boxes_to_masks(sample: Sample) -> Sample:
    """Set each box to its mask's tight box and drop instances whose mask vanished.

    Nearest-neighbour resizing can erase a one-pixel sliver of an occluded instance, so after the geometric
    transforms the mask is the truth and the box follows it (boxes stay consistent with masks everywhere).
    """
    masks = sample["gt_mask"]
    # uint8 max instead of any: ~10x faster on the flipped (negative-stride) mask views
    rows, cols = masks.max(axis=2, initial=0) > 0, masks.max(axis=1, initial=0) > 0  # [M, H], [M, W]
    keep = rows.any(axis=1)
    rows, cols = rows[keep], cols[keep]
    h, w = rows.shape[1], cols.shape[1]
    y1, x1 = rows.argmax(axis=1), cols.argmax(axis=1)
    y2, x2 = h - rows[:, ::-1].argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    if not keep.all():  # boolean indexing copies the whole mask stack: only when something vanished
        for key in ("gt_mask", "gt_class", "is_crowd"):
            sample[key] = sample[key][keep]
    sample["gt_bbox"] = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32).reshape(-1, 4)
    return sample


def apply_reader(sample: Sample, reader, rng: np.random.Generator, train: bool) -> Sample:
    """The reader's pipeline. Evaluation: `preprocess.Preprocess` of the EvalReader (ground truth
    dropped). Training: distort / expand / IoU crop, random resize, random flip, normalise and permute;
    with `reader.batch_sizes` the resize and normalisation happen per batch
    (`augment.multiscale_collate`), so the sample is returned as uint8 HWC."""
    from .augment import random_augment  # augment imports this module

    if not train:
        for key in GT_KEYS:
            sample.pop(key, None)
        return Preprocess.from_reader(reader).sample(sample)

    batch_scaled = len(reader.batch_sizes) > 0
    if "gt_mask" in sample:
        sample = random_augment(sample, reader, rng)
    if not batch_scaled:
        sizes = list(reader.short_sizes)
        short = int(sizes[rng.integers(len(sizes))])
        sample = resize(sample, short, int(reader.max_size), bool(reader.keep_ratio))
    if "gt_mask" in sample:  # before the flip: reductions on the flipped (negative-stride) view are slow
        sample = fit_boxes_to_masks(sample)
    if rng.random() < float(reader.flip_prob):
        sample = hflip(sample)  # exact on boxes, so they still fit the masks
    return sample if batch_scaled else normalize_permute(sample, reader.mean, reader.std)
