"""COCO segmentations (polygons, uncompressed and compressed RLE) -> one [M, H, W] uint8 bitmap stack.

Every annotation becomes one RLE, then pycocotools decodes the whole list in one C call.
"""
from typing import Any, Dict, List, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import DatasetError


def _rle(seg: Any, height: int, width: int, where: str) -> Dict[str, Any]:
    """One compressed RLE of a COCO segmentation; DatasetError (naming `where`) when malformed."""
    if isinstance(seg, list):
        polys = [p for p in seg if isinstance(p, (list, tuple))]
        if not polys or len(polys) != len(seg) or any(len(p) < 6 or len(p) % 2 for p in polys):
            raise DatasetError(f"{where}: polygon segmentation must be a list of [x1, y1, x2, y2, ...] lists "
                               "with at least 3 points each. Run Global.mode=check_dataset")
        try:
            return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
        except Exception as exc:  # noqa: BLE001 - non-numeric coordinates in the user's file
            raise DatasetError(f"{where}: bad polygon coordinates ({exc})") from None
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if [int(v) for v in seg["size"]] != [height, width]:
            raise DatasetError(f"{where}: RLE size {list(seg['size'])} differs from the image's "
                               f"(height, width) = ({height}, {width})")
        if isinstance(seg["counts"], list):  # uncompressed RLE (COCO crowd regions)
            if sum(int(c) for c in seg["counts"]) != height * width:
                raise DatasetError(f"{where}: uncompressed RLE counts do not sum to height * width")
            return mask_utils.frPyObjects(seg, height, width)
        counts = seg["counts"].encode("ascii") if isinstance(seg["counts"], str) else seg["counts"]
        return {"size": [height, width], "counts": counts}
    raise DatasetError(f"{where}: segmentation is neither a polygon list nor an RLE dict "
                       "({'size': [h, w], 'counts': ...}). Run Global.mode=check_dataset")


def decode_segmentations(segs: Sequence[Any], height: int, width: int, wheres: List[str]) -> np.ndarray:
    """Bitmaps [M, height, width] uint8 of `segs`; `wheres[i]` names annotation i in errors."""
    if not segs:
        return np.zeros((0, height, width), np.uint8)
    rles = [_rle(s, height, width, w) for s, w in zip(segs, wheres)]
    try:
        stack = mask_utils.decode(rles)  # [H, W, M], Fortran order
    except Exception as exc:  # noqa: BLE001 - a corrupt compressed RLE string
        raise DatasetError(f"{', '.join(wheres)}: RLE cannot be decoded ({exc})") from None
    return np.ascontiguousarray(stack.transpose(2, 0, 1))


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight x1, y1, x2, y2 boxes [M, 4] float32 of a [M, H, W] stack (pixel edges; zeros for empty masks)."""
    m, h, w = masks.shape
    if m == 0:
        return np.zeros((0, 4), np.float32)
    cols, rows = masks.any(axis=1), masks.any(axis=2)  # [M, W], [M, H]
    x1, y1 = cols.argmax(axis=1), rows.argmax(axis=1)
    x2, y2 = w - cols[:, ::-1].argmax(axis=1), h - rows[:, ::-1].argmax(axis=1)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    boxes[~cols.any(axis=1)] = 0
    return boxes
