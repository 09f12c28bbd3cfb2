"""Generate small synthetic COCO instance-segmentation datasets (demo data and test fixtures).

Each image holds a few filled shapes (ellipse, rectangle, triangle; one class each) on a textured
background. Annotations are polygons traced from the drawn masks, so polygons, boxes and areas agree.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CLASS_NAMES: Tuple[str, ...] = ("ellipse", "rectangle", "triangle")
_COLOURS = ((40, 40, 220), (40, 200, 40), (220, 120, 30))  # BGR, one per class


def _draw_shape(canvas: np.ndarray, cls: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one shape of class `cls` on `canvas` in place; return its binary mask (H, W) uint8."""
    h, w = canvas.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    size = int(rng.uniform(0.15, 0.35) * min(h, w))
    cx, cy = int(rng.uniform(size, w - size)), int(rng.uniform(size, h - size))
    if cls == 0:
        axes = (size, max(4, int(size * rng.uniform(0.5, 1.0))))
        cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif cls == 1:
        half_w, half_h = size, max(4, int(size * rng.uniform(0.5, 1.0)))
        cv2.rectangle(mask, (cx - half_w, cy - half_h), (cx + half_w, cy + half_h), 1, -1)
    else:
        pts = np.array([[cx, cy - size], [cx - size, cy + size], [cx + size, cy + size]], np.int32)
        cv2.fillPoly(mask, [pts], 1)
    jitter = rng.integers(-25, 26, size=3)
    colour = np.clip(np.array(_COLOURS[cls]) + jitter, 0, 255).astype(np.uint8)
    canvas[mask > 0] = colour
    return mask


def _mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """Trace the outer contours of a binary mask as COCO polygons (flat x, y lists)."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for contour in contours:
        if len(contour) >= 3:
            polys.append([float(v) + 0.5 for v in contour.reshape(-1)])
    return polys


def make_image(
    rng: np.random.Generator, height: int, width: int, max_shapes: int
) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]]]:
    """One image and its instances as (class index, visible mask) pairs, later shapes on top."""
    base = rng.integers(90, 170, size=3)
    image = (base + rng.normal(0, 12, size=(height, width, 3))).clip(0, 255).astype(np.uint8)
    instances: List[Tuple[int, np.ndarray]] = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        mask = _draw_shape(image, cls, rng)
        instances = [(c, m & (1 - mask)) for c, m in instances]  # occlusion by the new shape
        instances.append((cls, mask))
    return image, [(c, m) for c, m in instances if m.sum() >= 16]


def _annotation(ann_id: int, image_id: int, cls: int, mask: np.ndarray, use_rle: bool) -> Dict:
    height, width = mask.shape
    segmentation: Any  # RLE dict or polygon list
    if use_rle:
        rle = mask_utils.encode(np.asfortranarray(mask))
        segmentation = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
    else:
        segmentation = _mask_to_polygons(mask)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
    return {
        "id": ann_id, "image_id": image_id, "category_id": cls + 1, "bbox": [x, y, w, h],
        "area": float(mask_utils.area(rle)), "iscrowd": int(use_rle), "segmentation": segmentation,
    }


def make_coco_dataset(
    root: Path,
    num_train: int = 8,
    num_val: int = 4,
    size: Sequence[int] = (64, 64),
    max_shapes: int = 3,
    crowd_every: int = 0,
    seed: int = 0,
) -> Path:
    """Write `root/images/*.jpg` and `root/annotations/instance_{train,val}.json`.

    Args:
        root: dataset directory to create.
        num_train, num_val: images per split.
        size: (height, width) of every image.
        max_shapes: up to this many shapes per image (at least one).
        crowd_every: when > 0, every n-th instance is stored as a crowd RLE instead of a polygon.
        seed: RNG seed; the same seed gives the same files.
    Returns:
        `root`.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASS_NAMES)]
    image_id, ann_id = 0, 0
    for split, count in (("train", num_train), ("val", num_val)):
        images, annotations = [], []
        for _ in range(count):
            image_id += 1
            image, instances = make_image(rng, size[0], size[1], max_shapes)
            file_name = f"{split}_{image_id:05d}.jpg"
            cv2.imwrite(str(root / "images" / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append({"id": image_id, "file_name": file_name, "height": size[0], "width": size[1]})
            for cls, mask in instances:
                ann_id += 1
                use_rle = crowd_every > 0 and ann_id % crowd_every == 0
                annotations.append(_annotation(ann_id, image_id, cls, mask, use_rle))
        doc = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instance_{split}.json").write_text(json.dumps(doc))
    return root
