"""COCO instance-segmentation dataset: `<root>/images/` + `<root>/annotations/instance_{split}.json`."""
import contextlib
import io
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ..errors import DatasetError

SPLITS = ("train", "val")


def load_coco(path: Path) -> COCO:
    """pycocotools COCO of `path`, quietly; a clear DatasetError when it can't be read."""
    if not path.is_file():
        raise DatasetError(f"{path} does not exist. Expected <dataset_dir>/annotations/instance_{{train,val}}.json "
                           "(run Global.mode=check_dataset to validate the layout)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
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
        anns = self.coco.imgToAnns.get(image_id, [])
        sample: Dict[str, Any] = {"image": cv2.cvtColor(image, cv2.COLOR_BGR2RGB), "im_id": np.int64(image_id),
                                  "ori_shape": np.array([h, w], np.int32)}
        sample.update(self._targets(anns, h, w, path))
        return sample

    def _targets(self, anns: List[Dict[str, Any]], h: int, w: int, path: Path) -> Dict[str, np.ndarray]:
        masks = np.zeros((len(anns), h, w), np.uint8)
        for i, ann in enumerate(anns):
            masks[i] = self._mask(ann, h, w, path)
        boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        return {
            "gt_bbox": boxes,
            "gt_mask": masks,
            "gt_class": np.array([self._class_of[a["category_id"]] for a in anns], np.int32),
            "is_crowd": np.array([int(a.get("iscrowd", 0)) for a in anns], np.int32),
        }

    def _mask(self, ann: Dict[str, Any], h: int, w: int, path: Path) -> np.ndarray:
        seg = ann.get("segmentation")
        try:
            if isinstance(seg, list):
                rles = mask_utils.frPyObjects(seg, h, w)
                return mask_utils.decode(mask_utils.merge(rles))
            if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
                return mask_utils.decode(mask_utils.frPyObjects(seg, h, w))
            if isinstance(seg, dict):
                return mask_utils.decode(seg)
        except Exception as exc:  # noqa: BLE001 - corrupt segmentation in the user's file
            raise DatasetError(f"{self.ann_file}: annotation id {ann.get('id')} ({path.name}) has a bad "
                               f"segmentation: {exc}. Run Global.mode=check_dataset") from None
        raise DatasetError(f"{self.ann_file}: annotation id {ann.get('id')} has no polygon or RLE segmentation")
