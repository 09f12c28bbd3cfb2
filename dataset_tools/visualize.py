"""Drawing instances (masks, boxes, class names) and check_dataset's demo images.

The drawing helpers are shared: `class_colour` gives one fixed colour per class index (the k-th category id
in ascending order, as the model's class index), `draw_instances` blends masks and draws labelled boxes on
a BGR image. Images are read as OpenCV does (EXIF orientation applied), so a picture's (height, width) here
is the one the data loader sees and the one LabelMe records.
"""
import shutil
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from dataset_tools.report import ProblemLog
from engine.runtime.atomic_io import write_bytes

# 20 distinct colours (BGR), the Detectron palette PaddleX also uses.
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (189, 114, 0), (25, 83, 217), (32, 177, 237), (142, 47, 126), (48, 172, 119), (238, 190, 77),
    (47, 20, 162), (77, 77, 77), (153, 153, 153), (0, 0, 255), (0, 128, 255), (0, 191, 191), (0, 255, 0),
    (255, 0, 0), (255, 0, 170), (0, 85, 85), (0, 170, 85), (0, 255, 85), (0, 85, 170), (0, 170, 170),
)
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def class_colour(class_index: int) -> Tuple[int, int, int]:
    """The fixed BGR colour of a class index (cycles through PALETTE)."""
    return PALETTE[int(class_index) % len(PALETTE)]


def read_image(path: Path) -> Optional[np.ndarray]:
    """BGR uint8 image with EXIF orientation applied, or None when the file cannot be decoded."""
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    try:
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:  # e.g. a header claiming more pixels than OpenCV allows
        return None


def image_size(source: Union[Path, BinaryIO]) -> Optional[Tuple[int, int]]:
    """(height, width) after EXIF orientation, from the header only; None when unreadable.

    Args:
        source: an image file's path, or a binary file object (e.g. io.BytesIO of embedded bytes).
    """
    from PIL import Image, UnidentifiedImageError
    from PIL.Image import DecompressionBombError  # a header claiming ~180M+ pixels

    try:
        with Image.open(source) as img:
            width, height = img.size
            if img.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by 90 degrees
                width, height = height, width
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, DecompressionBombError):
        return None
    return height, width


def annotation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(height, width) uint8 0/1 mask of a COCO segmentation (polygons, or RLE with list or str counts)."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    with warnings.catch_warnings():  # pycocotools 2.0.x vs numpy 2: a harmless __array__ copy= warning
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle)


def draw_instances(
    image: np.ndarray,
    boxes: np.ndarray,
    class_indices: Sequence[int],
    labels: Sequence[str],
    masks: Optional[Sequence[np.ndarray]] = None,
    alpha: float = 0.6,
) -> np.ndarray:
    """Draw masks, boxes and labels on a copy of `image`.

    Args:
        image: (H, W, 3) uint8 BGR.
        boxes: (K, 4) float, x1, y1, x2, y2 in image pixels.
        class_indices: K class indices (colour per class via `class_colour`).
        labels: K captions ("cat" or "cat 0.87").
        masks: K (H, W) 0/1 arrays, or None to draw boxes only.
        alpha: mask opacity.
    Returns:
        The drawn (H, W, 3) uint8 BGR image.
    """
    out = image.copy()
    h, w = out.shape[:2]
    for k, mask in enumerate(masks if masks is not None else []):
        sel = mask.astype(bool)
        tint = np.array(class_colour(class_indices[k]), np.float32)
        out[sel] = (out[sel] * (1 - alpha) + tint * alpha).astype(np.uint8)
    thickness = max(1, round(0.004 * max(h, w)))
    scale = max(0.35, 0.0012 * max(h, w))
    for box, cls, text in zip(np.asarray(boxes, np.float64).reshape(-1, 4), class_indices, labels):
        colour = class_colour(cls)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = y1 - th - base if y1 - th - base >= 0 else y1  # above the box, or inside at the top edge
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), colour, -1)
        text_colour = (255, 255, 255) if sum(colour) < 3 * 150 else (20, 14, 53)
        cv2.putText(out, text, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, scale, text_colour, 1, cv2.LINE_AA)
    return out


def save_demo_images(split: Any, root: Path, output: Path, sample_num: int, log: ProblemLog) -> List[str]:
    """Draw up to `sample_num` images of a validated split into `output/check_dataset/demo_img/<split>/`.

    The drawn images are also where the files' real size is compared with the JSON's width/height; an
    unreadable image or a size mismatch is logged as an error and not drawn.

    Args:
        split: a `validate.SplitData`.
    Returns:
        Paths of the written images, relative to `output`.
    """
    rel_dir = Path("check_dataset") / "demo_img" / split.name
    out_dir = output / rel_dir
    shutil.rmtree(out_dir, ignore_errors=True)  # no stale pictures from an earlier run
    out_dir.mkdir(parents=True, exist_ok=True)
    by_image: Dict[int, List[int]] = {}
    for k in np.flatnonzero(split.ann_ok):
        by_image.setdefault(int(split.ann_image_index[k]), []).append(int(k))
    cat_ids = sorted(split.categories)
    written = []
    for i in np.flatnonzero(split.image_ok)[:sample_num]:
        entry = split.images[i]
        image = read_image(root / "images" / entry["file_name"])
        if image is None:
            log.error("image unreadable", split.file, entry["id"],
                      f"image images/{entry['file_name']} cannot be decoded; replace the file")
            continue
        if image.shape[:2] != (entry["height"], entry["width"]):
            log.error("image size differs", split.file, entry["id"], (
                f"images/{entry['file_name']} is {image.shape[1]}x{image.shape[0]} (width x height) but the "
                f"JSON says {entry['width']}x{entry['height']}; fix width/height"))
            continue
        anns = [split.annotations[k] for k in by_image.get(int(i), [])]
        drawn = draw_instances(
            image,
            np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                      for a in anns]).reshape(-1, 4),
            [cat_ids.index(a["category_id"]) for a in anns],
            [split.categories[a["category_id"]] for a in anns],
            [annotation_mask(a["segmentation"], entry["height"], entry["width"]) for a in anns],
        )
        name = entry["file_name"].replace("\\", "/").replace("/", "__")
        if Path(name).suffix.lower() not in _IMAGE_SUFFIXES:
            name += ".png"
        ok, buf = cv2.imencode(Path(name).suffix, drawn)
        if ok:
            write_bytes(out_dir / name, buf.tobytes())
            written.append((rel_dir / name).as_posix())
    return written
