"""Generated COCO ground truth (polygons, RLE, crowd regions, several classes) and perturbed detections."""
from typing import Any, Dict, List, Tuple

import numpy as np
from pycocotools import mask as mask_utils


def _rle(mask: np.ndarray) -> Dict[str, Any]:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def make_gt_and_results(
    seed: int = 0, n_images: int = 12, n_classes: int = 4, size: Tuple[int, int] = (120, 160)
) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """A COCO GT dict and a list of COCO results with compressed-RLE masks."""
    rng = np.random.default_rng(seed)
    h, w = size
    cat_ids = [3, 7, 11, 20][:n_classes]
    images, anns, results = [], [], []
    aid = 1
    for img_id in range(1, n_images + 1):
        images.append({"id": img_id * 5, "width": w, "height": h, "file_name": f"{img_id}.jpg"})
        for _ in range(int(rng.integers(0, 7))):
            cat = int(rng.choice(cat_ids))
            bw, bh = rng.integers(4, w // 2), rng.integers(4, h // 2)
            x0, y0 = rng.integers(0, w - bw), rng.integers(0, h - bh)
            crowd = int(rng.random() < 0.12)
            mask = np.zeros((h, w), np.uint8)
            mask[y0:y0 + bh, x0:x0 + bw] = 1
            kind = rng.integers(0, 3)
            if crowd or kind == 2:
                rle = mask_utils.encode(np.asfortranarray(mask))
                seg: Any = _uncompressed(mask)
                if not crowd:
                    counts = mask_utils.frPyObjects(seg, h, w)["counts"].decode("ascii")
                    seg = {"size": [h, w], "counts": counts}
                area = float(mask_utils.area(rle))
            else:
                poly = [float(x0), float(y0), float(x0 + bw), float(y0 + rng.integers(0, bh)),
                        float(x0 + bw), float(y0 + bh), float(x0 + rng.integers(0, bw)), float(y0 + bh)]
                seg = [poly]
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
                area = float(mask_utils.area(rle))
                mask = mask_utils.decode(rle)
            anns.append({"id": aid, "image_id": img_id * 5, "category_id": cat, "iscrowd": crowd,
                         "segmentation": seg, "area": area,
                         "bbox": [float(x0), float(y0), float(bw), float(bh)]})
            aid += 1
            for _ in range(int(rng.integers(0, 3))):  # perturbed detections of this instance
                dx, dy = rng.integers(-6, 7, size=2)
                dmask = np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
                dcat = cat if rng.random() < 0.85 else int(rng.choice(cat_ids))
                results.append(_det(img_id * 5, dcat, dmask, float(rng.random())))
        for _ in range(int(rng.integers(0, 4))):  # false positives
            dmask = np.zeros((h, w), np.uint8)
            x0, y0 = rng.integers(0, w - 10), rng.integers(0, h - 10)
            dmask[y0:y0 + rng.integers(2, 40), x0:x0 + rng.integers(2, 40)] = 1
            results.append(_det(img_id * 5, int(rng.choice(cat_ids)), dmask, float(rng.random())))
    cats = [{"id": c, "name": f"class_{c}", "supercategory": "x"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": cats}, results


def _uncompressed(mask: np.ndarray) -> Dict[str, Any]:
    flat = mask.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": [int(c) for c in counts]}


def _det(image_id: int, cat: int, mask: np.ndarray, score: float) -> Dict[str, Any]:
    rle = _rle(mask)
    return {"image_id": image_id, "category_id": cat, "score": score, "segmentation": rle,
            "bbox": [float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask)))]}
