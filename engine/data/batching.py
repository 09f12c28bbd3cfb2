"""Collate samples into the batch of docs/ENGINE.md: images padded to a common, stride-aligned size."""
from typing import Any, Dict, List

import numpy as np

GT_KEYS = ("gt_bbox", "gt_class", "gt_mask", "is_crowd")


def padded_size(shapes: np.ndarray, stride: int) -> List[int]:
    """Largest (h, w) of `shapes` [N, 2], rounded up to a multiple of `stride` (0 = no rounding)."""
    h, w = (int(v) for v in shapes.max(axis=0))
    if stride > 0:
        h, w = -(-h // stride) * stride, -(-w // stride) * stride
    return [h, w]


def collate(samples: List[Dict[str, Any]], pad_stride: int) -> Dict[str, Any]:
    """numpy batch: image float32 [N, 3, H, W] zero-padded; per-image gt lists with masks padded to (H, W)."""
    shapes = np.array([s["image"].shape[1:] for s in samples])
    height, width = padded_size(shapes, pad_stride)
    images = np.zeros((len(samples), 3, height, width), np.float32)
    for i, s in enumerate(samples):
        images[i, :, : s["image"].shape[1], : s["image"].shape[2]] = s["image"]
    batch: Dict[str, Any] = {
        "image": images,
        "im_shape": np.stack([s["im_shape"] for s in samples]).astype(np.float32),
        "scale_factor": np.stack([s["scale_factor"] for s in samples]).astype(np.float32),
        "ori_shape": np.stack([s["ori_shape"] for s in samples]).astype(np.int32),
        "im_id": np.array([s["im_id"] for s in samples], np.int64),
    }
    if "gt_bbox" in samples[0]:
        for key in GT_KEYS:
            batch[key] = [s[key] for s in samples]
        batch["gt_mask"] = [_pad_masks(m, height, width) for m in batch["gt_mask"]]
    return batch


def _pad_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    out = np.zeros((masks.shape[0], height, width), np.uint8)
    out[:, : masks.shape[1], : masks.shape[2]] = masks
    return out
