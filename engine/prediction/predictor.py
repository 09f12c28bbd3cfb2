"""Dynamic-graph prediction (``Global.mode=predict`` and ``engine.api.create_model`` with a model name).

Preprocessing is the evaluation transform the exported model uses
(``engine.deployment.exporter.preprocess_ops`` of ``EvalReader`` run by
``engine.deployment.inference.Preprocessor``), so a model predicts the same before and after export.
Threshold priority: ``predict(threshold=)`` > constructor ``threshold`` > ``model.draw_threshold`` (0.5); a
box is kept when its score is strictly greater.
"""
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from engine.errors import ConfigError, WeightsError
from engine.prediction.inputs import iter_inputs
from engine.prediction.results import InstanceSegResult

log = logging.getLogger("instseg")


def make_result(
    path: Optional[str], image: np.ndarray, bbox: np.ndarray, masks: Optional[np.ndarray],
    threshold: float, labels: Sequence[str],
) -> InstanceSegResult:
    """One image's result from raw rows ``(class, score, x1, y1, x2, y2)`` and full-image masks."""
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
    return InstanceSegResult(path, image, boxes, kept)


def _batches(items: Iterator[Tuple[Optional[str], np.ndarray]],
             size: int) -> Iterator[List[Tuple[Optional[str], np.ndarray]]]:
    batch: List[Tuple[Optional[str], np.ndarray]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class DynamicPredictor:
    """Predicts with a dynamic-graph model.

    Args:
        model: a built model following the model protocol (docs/ENGINE.md).
        preprocess_ops: inference.yml-style Preprocess ops (``engine.deployment.exporter.preprocess_ops``).
        labels: class names by class index.
        threshold: default score threshold; None = ``model.draw_threshold``.
    """

    def __init__(self, model: Any, preprocess_ops: List[Dict[str, Any]], labels: Sequence[str],
                 threshold: Optional[float] = None) -> None:
        from engine.deployment.inference import Preprocessor

        self.model = model
        self.model.eval()
        self.preprocessor = Preprocessor(preprocess_ops)
        self.labels = [str(x) for x in labels]
        self.threshold = threshold

    def _threshold(self, threshold: Optional[float]) -> float:
        for value in (threshold, self.threshold, getattr(self.model, "draw_threshold", None)):
            if value is not None:
                return float(value)
        return 0.5

    def raw(self, images: List[np.ndarray]) -> Dict[str, np.ndarray]:
        """``model.predict`` outputs (numpy) for a list of BGR images."""
        import paddle

        feeds = self.preprocessor.batch(images)
        batch = {k: paddle.to_tensor(v) for k, v in feeds.items()}
        batch["ori_shape"] = paddle.to_tensor(np.array([im.shape[:2] for im in images], np.int32))
        batch["im_id"] = paddle.to_tensor(np.arange(len(images), dtype=np.int64))
        with paddle.no_grad():
            out = self.model.predict(batch)
        return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v))
                for k, v in out.items() if v is not None}

    def predict(self, input: Any, batch_size: int = 1,
                threshold: Optional[float] = None) -> Iterator[InstanceSegResult]:
        """Yield one InstanceSegResult per input image, ``batch_size`` images per model call."""
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        thr = self._threshold(threshold)
        for batch in _batches(iter_inputs(input), int(batch_size)):
            out = self.raw([img for _, img in batch])
            nums = out["bbox_num"].astype(np.int64).reshape(-1)
            ends = np.cumsum(nums)
            for (path, img), lo, hi in zip(batch, ends - nums, ends):
                masks = out["mask"][lo:hi] if "mask" in out else None
                yield make_result(path, img, out["bbox"][lo:hi], masks, thr, self.labels)


def build_dynamic(cfg: Any, weight_path: Optional[str], threshold: Optional[float]) -> DynamicPredictor:
    """A DynamicPredictor from a config; ``weight_path`` None means random weights (loud warning)."""
    from engine.deployment.exporter import label_list, preprocess_ops
    from engine.models.zoo import build_model

    model = build_model(cfg.Global.model, cfg.Architecture, int(cfg.Train.num_classes))
    if weight_path is None:
        msg = (f"No weights given for {cfg.Global.model}: it is RANDOMLY INITIALISED and its predictions are "
               f"meaningless. Pass weight_path=<trained .pdparams> (or Predict.weight_path).")
        log.warning(msg)
        import warnings

        warnings.warn(msg, UserWarning, stacklevel=3)
    else:
        from engine.models.weights import load_trained_weights

        load_trained_weights(model, str(weight_path), str(cfg.Global.model), int(cfg.Train.num_classes))
    return DynamicPredictor(model, preprocess_ops(cfg.EvalReader), label_list(cfg), threshold)


def run(cfg: Any) -> Dict[str, Any]:
    """Global.mode=predict: one JSON and one picture per input image in Global.output."""
    if not cfg.Predict.input:
        raise ConfigError("Predict.input is not set: give an image, a directory or a URL "
                          "(-o Predict.input=...)")
    output = Path(cfg.Global.output)
    threshold = cfg.Predict.threshold
    if cfg.Predict.model_dir:
        from engine.deployment.inference import DeployPredictor

        ko = cfg.Predict.kernel_option
        predictor: Any = DeployPredictor(str(cfg.Predict.model_dir), device=cfg.Global.device,
                                         threshold=threshold, run_mode=ko.run_mode,
                                         cpu_threads=ko.cpu_threads or cfg.Global.cpu_threads)
        source = str(cfg.Predict.model_dir)
    else:
        from engine.runtime.device import setup_device

        setup_device(cfg)
        weights = Path(cfg.Predict.weight_path or output / "best_model" / "best_model.pdparams")
        if not weights.is_file():
            raise WeightsError(f"Predict.weight_path {weights} does not exist; train first, or set "
                               "-o Predict.weight_path=<file.pdparams> or -o Predict.model_dir=<export "
                               "dir>.")
        predictor = build_dynamic(cfg, str(weights), threshold)
        source = str(weights)
    saved = []
    for res in predictor.predict(str(cfg.Predict.input), batch_size=int(cfg.Predict.batch_size)):
        res.print()
        js, im = res.save_to_json(str(output)), res.save_to_img(str(output))
        saved.append({"input_path": res.input_path, "num_instances": len(res.boxes),
                      "json": str(js), "img": str(im)})
    return {"model": source, "input": str(cfg.Predict.input), "num_images": len(saved), "results": saved}
