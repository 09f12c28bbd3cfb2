"""Train-time random augmentations of one sample beyond resize/flip: photometric distortion, zoom-out
(expand) and SSD-style IoU crop (PaddleDetection's RandomDistort / RandomExpand / RandomCrop).

Samples are as in `transforms.py` (image uint8 RGB [H, W, 3], gt_bbox [M, 4], gt_mask [M, H, W], ...);
every op works on the whole instance array at once and keeps masks and boxes together.
"""
from typing import Any, Dict, List, Sequence

import cv2
import numpy as np

from . import transforms
from .batching import collate
from .masks import mask_boxes

Sample = Dict[str, np.ndarray]


def distort(sample: Sample, rng: np.random.Generator) -> Sample:
    """Random brightness, contrast, saturation and hue, each with probability 1/2 (no geometry change)."""
    image = sample["image"].astype(np.float32)
    if rng.random() < 0.5:
        image += rng.uniform(-32, 32)
    if rng.random() < 0.5:
        image *= rng.uniform(0.5, 1.5)
    if rng.random() < 0.5:
        gray = image @ np.array([0.299, 0.587, 0.114], np.float32)
        alpha = rng.uniform(0.5, 1.5)
        image = image * alpha + gray[..., None] * (1 - alpha)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + int(rng.integers(-9, 10))) % 180).astype(np.uint8)
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    sample["image"] = image
    return sample


def expand(sample: Sample, rng: np.random.Generator, fill: Sequence[float], max_ratio: float = 4.0) -> Sample:
    """With probability 1/2 put the image at a random spot of a canvas up to `max_ratio` times larger,
    filled with the mean colour (`fill` in 0–1); masks are zero-padded and boxes shifted the same way."""
    if rng.random() < 0.5:
        return sample
    h, w = sample["image"].shape[:2]
    ratio = rng.uniform(1.0, max_ratio)
    out_h, out_w = int(h * ratio), int(w * ratio)
    y, x = int(rng.integers(0, out_h - h + 1)), int(rng.integers(0, out_w - w + 1))
    canvas = np.empty((out_h, out_w, 3), np.uint8)
    canvas[:] = np.clip(np.asarray(fill, np.float64) * 255.0, 0, 255).astype(np.uint8)
    canvas[y:y + h, x:x + w] = sample["image"]
    sample["image"] = canvas
    masks = np.zeros((sample["gt_mask"].shape[0], out_h, out_w), np.uint8)
    masks[:, y:y + h, x:x + w] = sample["gt_mask"]
    sample["gt_mask"] = masks
    sample["gt_bbox"] = sample["gt_bbox"] + np.array([x, y, x, y], np.float32)
    return sample


def _iou(window: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(window[:2], boxes[:, :2]), np.minimum(window[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (np.prod(window[2:] - window[:2]) + areas - inter + 1e-9)


def iou_crop(sample: Sample, rng: np.random.Generator, attempts: int = 50) -> Sample:
    """Crop a window whose IoU with some box reaches a randomly drawn threshold (or leave the sample).

    Instances whose box centre leaves the window, or whose mask is empty inside it, are dropped; boxes
    are re-fitted to the cropped masks (a clipped box can be wider than what is left of its mask).
    """
    boxes = sample["gt_bbox"]
    if len(boxes) == 0:
        return sample
    h, w = sample["image"].shape[:2]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    for thresh in rng.permutation(np.array([-1.0, 0.0, 0.1, 0.3, 0.5, 0.7, 0.9])):
        if thresh < 0:  # the "no crop" choice
            return sample
        for _ in range(attempts):
            scale = rng.uniform(0.3, 1.0)
            ratio = rng.uniform(max(0.5, scale ** 2), min(2.0, 1.0 / scale ** 2))
            ch, cw = int(h * scale / np.sqrt(ratio)), int(w * scale * np.sqrt(ratio))
            if ch < 2 or cw < 2 or ch > h or cw > w:
                continue
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            window = np.array([x, y, x + cw, y + ch], np.float32)
            if _iou(window, boxes).max() < thresh:
                continue
            inside = np.all((centres > window[:2]) & (centres < window[2:]), axis=1)
            masks = sample["gt_mask"][inside, y:y + ch, x:x + cw]
            alive = masks.any(axis=(1, 2))
            if not alive.any():
                continue
            keep = np.flatnonzero(inside)[alive]
            sample["image"] = np.ascontiguousarray(sample["image"][y:y + ch, x:x + cw])
            sample["gt_mask"] = np.ascontiguousarray(masks[alive])
            sample["gt_bbox"] = mask_boxes(sample["gt_mask"])
            sample["gt_class"], sample["is_crowd"] = sample["gt_class"][keep], sample["is_crowd"][keep]
            return sample
    return sample


def random_augment(sample: Sample, reader: Any, rng: np.random.Generator) -> Sample:
    """The reader's enabled augmentations, in PaddleDetection's order: distort, expand, crop."""
    if bool(reader.distort):
        sample = distort(sample, rng)
    if bool(reader.expand):
        fill = getattr(reader, "expand_fill", None)
        fill = reader.mean if fill is None else fill
        sample = expand(sample, rng, fill)
    if bool(reader.crop):
        sample = iou_crop(sample, rng)
    return sample


def multiscale_collate(samples: List[Sample], sizes: Sequence[int], mean: Sequence[float],
                       std: Sequence[float], pad_stride: int, seed: int, epoch: int) -> Dict[str, Any]:
    """Batch-level multi-scale (PaddleDetection's BatchRandomResize): every image of the batch is resized
    to one square size drawn per batch, then normalised and collated. The draw depends on the seed, the
    epoch and the batch's image ids only, so a batch that recurs in another epoch gets a fresh size while
    any worker layout and a resumed run draw the same one."""
    rng = np.random.default_rng([seed, epoch] + [int(s["im_id"]) for s in samples])
    size = int(sizes[rng.integers(len(sizes))])
    out = []
    for sample in samples:
        sample = transforms.resize(sample, size, size, False)
        if "gt_mask" in sample:  # the resized mask is the truth (nearest resize may erase slivers)
            sample = transforms.fit_boxes_to_masks(sample)
        out.append(transforms.normalize_permute(sample, mean, std))
    return collate(out, pad_stride)
