"""What every predictor shares: inputs (engine.prediction.inputs) in batches, the score threshold, and
raw detections turned into InstanceSegResults.

A predictor subclass gives `raw(images)` (the model's outputs for a list of BGR images), `labels` and
`default_threshold()`; `predict` does the rest, the same for the dynamic graph and an exported model.
Threshold priority: `predict(threshold=)` > the constructor's `threshold` > `default_threshold()` > 0.5;
a box is kept when its score is strictly greater.
"""
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from engine.errors import ConfigError
from engine.prediction.inputs import iter_inputs
from engine.prediction.results import InstanceSegResult

Item = Tuple[Optional[str], np.ndarray]


def make_result(path: Optional[str], image: np.ndarray, bbox: np.ndarray, masks: Optional[np.ndarray],
                threshold: float, labels: Sequence[str],
                inference: Optional[Dict[str, Any]] = None) -> InstanceSegResult:
    """One image's result from raw rows `(class, score, x1, y1, x2, y2)` [K, 6] in original pixels and
    full-image masks [K, Hm, Wm] (cropped to the image): rows with score > threshold, boxes clipped;
    `inference` (how the model ran) is recorded as is."""
    h, w = image.shape[:2]
    bbox = np.asarray(bbox, np.float32).reshape(-1, 6)
    keep = np.flatnonzero((bbox[:, 1] > threshold) & (bbox[:, 0] >= 0))
    rows = bbox[keep]
    coords = np.clip(rows[:, 2:6], 0, [w, h, w, h]).tolist()
    cls_ids = rows[:, 0].astype(np.int64).tolist()
    scores = rows[:, 1].tolist()
    boxes = [{"cls_id": c, "label": labels[c] if c < len(labels) else str(c), "score": s, "coordinate": xy}
             for c, s, xy in zip(cls_ids, scores, coords)]
    kept = [] if masks is None else list(np.asarray(masks)[keep][:, :h, :w].astype(np.uint8))
    return InstanceSegResult(path, image, boxes, kept, inference=inference)


def batches(items: Iterator[Item], size: int) -> Iterator[List[Item]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    batch: List[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class BasePredictor:
    """`predict()` over `raw()`; subclasses set `labels`, `threshold` and implement `raw`."""

    labels: List[str]
    threshold: Optional[float]

    def raw(self, images: List[np.ndarray]) -> Dict[str, np.ndarray]:
        """bbox float32 [K, 6], bbox_num int32 [N] and (when the model has masks) mask [K, Hm, Wm]."""
        raise NotImplementedError

    def default_threshold(self) -> Optional[float]:
        """The model's own draw threshold (None = 0.5)."""
        return None

    def run_info(self) -> Optional[Dict[str, Any]]:
        """How the last batch ran (backend, precision, ...) for the results; None = not recorded."""
        return None

    def resolve_threshold(self, threshold: Optional[float]) -> float:
        for value in (threshold, self.threshold, self.default_threshold()):
            if value is not None:
                return float(value)
        return 0.5

    def predict(self, input: Any, batch_size: int = 1,
                threshold: Optional[float] = None) -> Iterator[InstanceSegResult]:
        """Yield one InstanceSegResult per input image (engine.prediction.inputs), `batch_size` images per
        model call."""
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        thr = self.resolve_threshold(threshold)
        for batch in batches(iter_inputs(input), int(batch_size)):
            out = self.raw([img for _, img in batch])
            info = self.run_info()
            nums = np.asarray(out["bbox_num"]).astype(np.int64).reshape(-1)
            ends = np.cumsum(nums)
            for (path, img), lo, hi in zip(batch, ends - nums, ends):
                masks = out["mask"][lo:hi] if "mask" in out else None
                yield make_result(path, img, out["bbox"][lo:hi], masks, thr, self.labels, info)
