"""Evaluation: run a model over the val loader, turn its outputs into COCO results, compute COCO AP.

``run(cfg)`` is ``Global.mode=evaluate``; ``evaluate_model`` is what the trainer calls after epochs. Under
paddle.distributed.launch each rank predicts its share of the val set and rank 0 scores them all.
Masks become compressed RLE right after each batch (one pycocotools call per image for all its
instances), so memory holds RLEs, never a whole val set of bitmaps.
"""
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from engine.evaluation.coco_metrics import STAT_NAMES, evaluate_coco, load_gt, summary_lines
from engine.errors import DatasetError

log = logging.getLogger("instseg")


def _numpy(x: Any) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _gt_of(dataset: Any) -> COCO:
    """The dataset's pycocotools ground truth: its ``coco`` object or its annotation file."""
    coco = getattr(dataset, "coco", None)
    if isinstance(coco, COCO):
        return coco
    for attr in ("ann_file", "ann_path", "annotation_file", "json_path"):
        path = getattr(dataset, attr, None)
        if path:
            return load_gt(str(path))
    raise DatasetError("the evaluation dataset exposes neither a pycocotools `coco` nor an annotation "
                       "file path")


def batch_to_coco(
    out: Dict[str, Any], im_ids: np.ndarray, ori_shapes: np.ndarray, cat_ids: Sequence[int]
) -> List[Dict[str, Any]]:
    """COCO result dicts (bbox xywh + compressed RLE) of one batch of ``model.predict`` outputs."""
    bbox = _numpy(out["bbox"]).reshape(-1, 6).astype(np.float64)
    nums = _numpy(out["bbox_num"]).astype(np.int64).reshape(-1)
    masks = _numpy(out["mask"]) if out.get("mask") is not None else None
    cats = np.asarray(cat_ids, np.int64)
    ends = np.cumsum(nums)
    results: List[Dict[str, Any]] = []
    for i, (lo, hi) in enumerate(zip(ends - nums, ends)):
        rows = bbox[lo:hi]
        keep = np.flatnonzero((rows[:, 0] >= 0) & (rows[:, 0] < len(cats)))
        if keep.size == 0:
            continue
        rows = rows[keep]
        image_id = int(im_ids[i])
        cat = cats[rows[:, 0].astype(np.int64)].tolist()
        xywh = np.concatenate([rows[:, 2:4], rows[:, 4:6] - rows[:, 2:4]], axis=1).tolist()
        scores = rows[:, 1].tolist()
        rles: List[Optional[Dict[str, Any]]] = [None] * len(keep)
        if masks is not None:
            h, w = int(ori_shapes[i][0]), int(ori_shapes[i][1])
            m = masks[lo:hi][keep][:, :h, :w].astype(np.uint8)
            rles = mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0)))
        for c, box, s, rle in zip(cat, xywh, scores, rles):
            r: Dict[str, Any] = {"image_id": image_id, "category_id": int(c), "bbox": box, "score": s}
            if rle is not None:
                r["segmentation"] = {"size": [int(v) for v in rle["size"]],
                                     "counts": rle["counts"].decode("ascii")}
            results.append(r)
    return results


def collect_results(model: Any, loader: Any, cat_ids: Sequence[int],
                    log_interval: int = 0) -> Tuple[List[Dict[str, Any]], bool]:
    """Predictions over ``loader`` as COCO results; also whether the model produced masks. Progress is
    logged every ``log_interval`` batches (0: never)."""
    import paddle

    was_training = bool(getattr(model, "training", False))
    model.eval()
    results: List[Dict[str, Any]] = []
    has_mask = False
    total = len(loader) if hasattr(loader, "__len__") else "?"
    try:
        with paddle.no_grad():
            for it, batch in enumerate(loader, start=1):
                out = model.predict(batch)
                has_mask = has_mask or out.get("mask") is not None
                results.extend(batch_to_coco(out, _numpy(batch["im_id"]).reshape(-1),
                                             _numpy(batch["ori_shape"]).reshape(-1, 2), cat_ids))
                if log_interval > 0 and (it % log_interval == 0 or it == total):
                    log.info("Eval iter %d/%s: %d detections so far", it, total, len(results))
    finally:
        if was_training:
            model.train()
    return results, has_mask


def flatten_metrics(coco: Dict[str, Any]) -> Dict[str, Any]:
    """evaluate_coco's output as the evaluate_result metrics: mask stats unprefixed (``AP`` is mask AP,
    as in PaddleX), box stats prefixed ``bbox_``, ``per_class_mask_AP``, and ``eval_backend`` (the COCO
    backend that ran)."""
    metrics: Dict[str, Any] = {"eval_backend": coco["backend"]}
    if "segm" in coco:
        metrics.update({n: coco["segm"][n] for n in STAT_NAMES})
    if "bbox" in coco:
        metrics.update({f"bbox_{n}": coco["bbox"][n] for n in STAT_NAMES})
        if "segm" not in coco:
            metrics["AP"] = coco["bbox"]["AP"]  # a box-only model: its box AP is its score
    if "segm" in coco:
        metrics["per_class_mask_AP"] = coco["per_class_AP"]["segm"]
    return metrics


def gather_results(results: List[Dict[str, Any]], has_mask: bool
                   ) -> Optional[Tuple[List[Dict[str, Any]], bool]]:
    """Data-parallel: every rank's results on rank 0, ordered by image id (each rank evaluated a disjoint
    share of the images, engine.data.loader), None on the other ranks; unchanged in a single process."""
    from engine.runtime import distributed as dist

    if dist.world_size() <= 1:
        return results, has_mask
    parts = dist.all_gather_object((results, has_mask))
    if not dist.is_main():
        return None
    merged = [r for part, _ in parts for r in part]
    merged.sort(key=lambda r: r["image_id"])  # stable: an image's detections keep their order
    return merged, any(mask for _, mask in parts)


def evaluate_model(model: Any, loader: Any, dataset: Any = None, backend: str = "pycocotools",
                   log_interval: int = 0) -> Optional[Dict[str, Any]]:
    """COCO box and mask metrics of ``model`` on ``loader`` (``dataset`` default: ``loader.dataset``);
    ``backend`` and ``log_interval`` as Evaluate.backend / Evaluate.log_interval.

    Data-parallel, ``loader`` holds this rank's share of the images and every rank must call this: rank 0
    returns the metrics over all shares, the other ranks None."""
    dataset = dataset if dataset is not None else loader.dataset
    gt = _gt_of(dataset)
    cat_ids = list(getattr(dataset, "cat_ids", None) or sorted(gt.getCatIds()))
    labels = list(getattr(dataset, "label_names", None) or [gt.cats[c]["name"] for c in cat_ids])
    results, has_mask = collect_results(model, loader, cat_ids, log_interval)
    gathered = gather_results(results, has_mask)
    if gathered is None:
        return None
    results, has_mask = gathered
    iou_types = ("bbox", "segm") if has_mask else ("bbox",)
    coco = evaluate_coco(gt, results, iou_types, backend=backend, label_names=labels)
    for t in iou_types:
        log.info("COCO %s (%d detections, %s backend):\n%s", t, len(results), coco["backend"],
                 "\n".join(summary_lines(coco[t]["stats"], t)))
    return flatten_metrics(coco)


def run(cfg: Any) -> Dict[str, Any]:
    """Global.mode=evaluate: load Evaluate.weight_path and report COCO metrics on the val split."""
    from engine.data.loader import build_loader
    from engine.runtime.device import setup_device
    from engine.models.zoo import build_model
    from engine.models.weights import load_trained_weights

    setup_device(cfg)
    default_weights = Path(cfg.Global.output) / "best_model" / "best_model.pdparams"
    weight_path = cfg.Evaluate.weight_path or str(default_weights)
    model = build_model(cfg.Global.model, cfg.Architecture, int(cfg.Train.num_classes))
    load_trained_weights(model, weight_path, str(cfg.Global.model), int(cfg.Train.num_classes))
    built = build_loader(cfg, "val")
    loader, dataset = built if isinstance(built, tuple) else (built, built.dataset)
    metrics = evaluate_model(model, loader, dataset, backend=str(cfg.Evaluate.backend),
                             log_interval=int(cfg.Evaluate.log_interval))
    return {"metrics": metrics, "weight_path": str(weight_path)}  # metrics None on ranks > 0 (no file)
