"""InstanceSegResult: one image's prediction, printable and savable as JSON (RLE masks) and an image.

`.img` is ``{"res": PIL.Image}`` (RGB), as in PaddleX, so notebooks display it directly;
``save_to_img`` writes that picture. Masks are full-image uint8 (H, W) arrays, one per box.
"""
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pycocotools import mask as mask_utils

from engine.runtime import atomic_io

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

# Fixed per-class colours (RGB); class k gets _PALETTE[k % len]. Never mutated.
_PALETTE = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
        (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
        (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
    ],
    dtype=np.uint8,
)
MASK_ALPHA = 0.6


def class_colour(cls_id: int) -> np.ndarray:
    """The fixed RGB colour of a class (a fresh copy, so callers cannot alter the palette)."""
    return _PALETTE[int(cls_id) % len(_PALETTE)].copy()


def mask_to_rle(mask: np.ndarray) -> Dict[str, Any]:
    """COCO compressed RLE ``{size: [h, w], counts: str}`` of a binary mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """Decode a mask saved by ``save_to_json``."""
    obj = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(obj)


def _new_stem() -> str:
    return f"{int(time.time())}_{os.urandom(2).hex()}"


class InstanceSegResult:
    """Prediction for one image (spec §5)."""

    def __init__(
        self,
        input_path: Any = None,
        image: Optional[np.ndarray] = None,
        boxes: Optional[List[Dict[str, Any]]] = None,
        masks: Optional[Sequence[np.ndarray]] = None,
        page_index: Optional[int] = None,
        inference: Optional[Dict[str, Any]] = None,
    ) -> None:
        """Fields as arguments, or one dict ``{input_path, page_index, input_img, boxes, masks[,
        inference]}``. ``inference`` (exported models: backend, precision, run_mode, device, use_hpip)
        appears in the JSON when given."""
        if isinstance(input_path, dict):
            d = input_path
            input_path, image, page_index = d.get("input_path"), d["input_img"], d.get("page_index")
            boxes, masks, inference = d.get("boxes", []), d.get("masks", []), d.get("inference")
        if image is None:
            raise ValueError("InstanceSegResult needs the input image")
        boxes = list(boxes or [])
        masks = list(masks if masks is not None else [])
        self.input_path = input_path
        self.page_index = page_index
        self.inference = dict(inference) if inference is not None else None
        self.input_img = image  # BGR, hidden from print / json
        self.boxes = boxes
        self.masks = [np.asarray(m, dtype=np.uint8) for m in masks]
        self._stem = Path(input_path).stem if input_path else _new_stem()
        self._suffix = Path(input_path).suffix.lower() if input_path else ".png"
        if self._suffix not in IMAGE_SUFFIXES:
            self._suffix = ".png"

    @property
    def stem(self) -> str:
        """File-name stem of saved files: the input's, or a time-and-random one for arrays."""
        return self._stem

    @property
    def image_suffix(self) -> str:
        """Suffix `save_to_img` uses for a directory: the input's image suffix, else `.png`."""
        return self._suffix

    def _plain(self, masks: Any) -> Dict[str, Any]:
        plain: Dict[str, Any] = {
            "input_path": self.input_path,
            "page_index": self.page_index,
            "boxes": [
                {"cls_id": int(b["cls_id"]), "label": str(b["label"]), "score": float(b["score"]),
                 "coordinate": [float(v) for v in b["coordinate"]]}
                for b in self.boxes
            ],
            "masks": masks,
        }
        if self.inference is not None:
            plain["inference"] = dict(self.inference)
        return plain

    @property
    def json(self) -> Dict[str, Any]:
        """``{"res": {...}}`` with masks as COCO RLE (JSON-serialisable)."""
        return {"res": self._plain([mask_to_rle(m) for m in self.masks])}

    def __str__(self) -> str:
        return json.dumps({"res": self._plain("...")}, indent=4, ensure_ascii=False)

    def print(self) -> None:
        """Print the result with masks shown as '...'."""
        print(str(self))

    def __getitem__(self, key: str) -> Any:
        return {**self._plain(self.masks), "input_img": self.input_img}[key]

    # ---- visualisation ----
    def _render(self) -> np.ndarray:
        """RGB uint8 picture: masks blended at MASK_ALPHA, then boxes and 'label 0.87' captions."""
        rgb = np.ascontiguousarray(self.input_img[:, :, ::-1]).astype(np.float32)
        h, w = rgb.shape[:2]
        if self.masks:
            stack = np.stack([m[:h, :w] for m in self.masks]).astype(bool)  # [K, H, W]
            colours = np.stack([class_colour(b["cls_id"]) for b in self.boxes]).astype(np.float32)
            # Topmost instance = highest score = first box; later ones are painted under it.
            owner = np.where(stack.any(0), stack.argmax(0), -1)
            covered = owner >= 0
            rgb[covered] = rgb[covered] * (1 - MASK_ALPHA) + colours[owner[covered]] * MASK_ALPHA
        img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        width = max(1, int(0.002 * max(h, w)))
        font = _font(int(0.018 * w) + 2)
        for b in self.boxes:
            colour = tuple(int(c) for c in class_colour(b["cls_id"]))
            x1, y1, x2, y2 = (float(v) for v in b["coordinate"])
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
            text = f"{b['label']} {b['score']:.2f}"
            tx1, ty1, tx2, ty2 = draw.textbbox((x1, y1), text, font=font)
            th = ty2 - ty1
            ty = y1 - th - 2 if y1 - th - 2 >= 0 else y1
            draw.rectangle([x1, ty, x1 + (tx2 - tx1) + 2, ty + th + 2], fill=colour)
            luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
            ink = (0, 0, 0) if luminance > 128 else (255, 255, 255)
            draw.text((x1 + 1, ty - (ty1 - y1)), text, fill=ink, font=font)
        return np.asarray(img)

    @property
    def img(self) -> Dict[str, Image.Image]:
        """``{"res": PIL.Image}`` (RGB) of the visualisation."""
        return {"res": Image.fromarray(self._render())}

    # ---- saving ----
    def _target(self, path: str, suffixes: Sequence[str], default_suffix: str) -> Path:
        p = Path(path)
        if p.suffix.lower() in suffixes:
            return p
        page = f"_{self.page_index}" if self.page_index is not None else ""
        return p / f"{self._stem}{page}_res{default_suffix}"

    def save_to_json(self, save_path: str) -> Path:
        """Write the JSON result (masks as RLE); a directory gets ``<stem>_res.json``."""
        target = self._target(save_path, (".json",), ".json")
        atomic_io.write_json(target, self.json["res"])
        return target

    def save_to_img(self, save_path: str) -> Path:
        """Write the visualisation; a directory gets ``<stem>_res<input suffix or .png>``."""
        target = self._target(save_path, IMAGE_SUFFIXES, self._suffix)
        ok, buf = cv2.imencode(target.suffix, self._render()[:, :, ::-1])
        if not ok:
            raise ValueError(f"could not encode the visualisation as {target.suffix}")
        atomic_io.write_bytes(target, buf.tobytes())
        return target


_FONTS: Dict[int, Any] = {}


def _font(size: int) -> Any:
    """A TrueType font at `size` when one is found (matplotlib ships DejaVu), else PIL's default."""
    if size not in _FONTS:
        try:
            import matplotlib

            ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
            _FONTS[size] = ImageFont.truetype(str(ttf), max(size, 8))
        except Exception:  # font lookup is cosmetic; never fail a prediction over it
            _FONTS[size] = ImageFont.load_default()
    return _FONTS[size]


__all__ = ["InstanceSegResult", "mask_to_rle", "rle_to_mask", "class_colour"]
