"""COCO instance-segmentation dataset: `<root>/images/` + `<root>/annotations/instance_{split}.json`."""
import contextlib
import io
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
from pycocotools.coco import COCO

from ..errors import DatasetError
from ..runtime.json_read import read_json
from .masks import decode_segmentations

SPLITS = ("train", "val")


def load_coco(path: Path) -> COCO:
    """pycocotools COCO of `path`, quietly; a clear DatasetError when it can't be read."""
    if not path.is_file():
        raise DatasetError(f"{path} does not exist. Expected "
                           "<dataset_dir>/annotations/instance_{train,val}.json "
                           "(run Global.mode=check_dataset to validate the layout)")
    try:
        dataset = read_json(path)  # orjson when installed: most of COCO()'s load time is the JSON parse
        if not isinstance(dataset, dict):
            raise TypeError(f"the top level is {type(dataset).__name__}, not a COCO object")
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = dataset
            coco.createIndex()
        return coco
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise DatasetError(f"{path} cannot be read as COCO: {exc}. Run Global.mode=check_dataset") from None


class CocoInstances:
    """Images with their instances (masks decoded per item); class index k ↔ k-th category id ascending.

    Args:
        dataset_dir: dataset root.
        split: "train" or "val".
        skip_empty: drop images without non-crowd annotations (training).
    """

    def __init__(self, dataset_dir: str, split: str, skip_empty: bool = False) -> None:
        self.root = Path(dataset_dir)
        self.ann_file = self.root / "annotations" / f"instance_{split}.json"
        self.coco = load_coco(self.ann_file)
        self.cat_ids: List[int] = sorted(self.coco.getCatIds())
        self.label_names: List[str] = [str(self.coco.cats[c]["name"]) for c in self.cat_ids]
        self._class_of = {c: i for i, c in enumerate(self.cat_ids)}
        ids = sorted(self.coco.getImgIds())
        if skip_empty:
            ids = [i for i in ids if any(not a.get("iscrowd", 0) for a in self.coco.imgToAnns.get(i, []))]
        self.image_ids: List[int] = ids

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int) -> Dict[str, Any]:
        """Sample `index`: image uint8 RGB [H, W, 3], gt_bbox float32 [M, 4] xyxy, gt_mask uint8 [M, H, W],
        gt_class int32 [M], is_crowd int32 [M], im_id, ori_shape int32 [2]."""
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.root / "images" / str(info["file_name"])
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # applies EXIF orientation
        if image is None:
            raise DatasetError(f"Image {path} (image id {image_id}) is missing or unreadable")
        h, w = image.shape[:2]
        if (int(info.get("height", h)), int(info.get("width", w))) != (h, w):
            raise DatasetError(f"{self.ann_file.name}: image id {image_id} ({path.name}) is {h}x{w} (h x w) "
                               f"after its EXIF orientation, but the JSON says "
                               f"{info.get('height')}x{info.get('width')}")
        anns = self.coco.imgToAnns.get(image_id, [])
        sample: Dict[str, Any] = {"image": cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
                                  "im_id": np.int64(image_id), "ori_shape": np.array([h, w], np.int32)}
        sample.update(self._targets(anns, h, w, path))
        return sample

    def _targets(self, anns: List[Dict[str, Any]], h: int, w: int, path: Path) -> Dict[str, np.ndarray]:
        wheres = [f"{self.ann_file.name}: annotation id {a.get('id')} (image {path.name})" for a in anns]
        for ann, where in zip(anns, wheres):
            bbox = ann.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                raise DatasetError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
            if ann.get("category_id") not in self._class_of:
                raise DatasetError(f"{where}: category_id {ann.get('category_id')!r} is not in categories")
        masks = decode_segmentations([a.get("segmentation") for a in anns], h, w, wheres)
        boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes = np.clip(boxes, 0, np.array([w, h, w, h], np.float32))
        # degenerate boxes carry nothing to learn (PaddleDetection skips them as well)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return {
            "gt_bbox": boxes[keep],
            "gt_mask": masks[keep],
            "gt_class": np.array([self._class_of[a["category_id"]] for a in anns],
                                 np.int32).reshape(-1)[keep],
            "is_crowd": np.array([int(a.get("iscrowd", 0)) for a in anns], np.int32).reshape(-1)[keep],
        }
