"""COCO box and mask AP: the 12 standard stats per IoU type and per-class mask AP.

Two backends give the very same numbers (tests/test_coco_metrics.py checks them to 1e-9 against
pycocotools' COCOeval run directly):
- ``pycocotools``: pycocotools' COCOeval, the reference.
- ``fast``: faster-coco-eval's C++ evaluate/accumulate (``COCOeval_faster``), when that package is
  installed; otherwise pycocotools with a warning (same numbers, reference speed).
The output's ``backend`` says which one ran.
"""
import contextlib
import copy
import io
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from engine.data.coco import load_coco
from engine.errors import ConfigError

log = logging.getLogger("instseg")

BACKENDS = ("pycocotools", "fast")
IOU_TYPES = ("bbox", "segm")
STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)


def load_gt(coco_gt: Union[COCO, str]) -> COCO:
    """A pycocotools COCO object from itself or a JSON path (index built quietly)."""
    if isinstance(coco_gt, COCO):
        return coco_gt
    return load_coco(Path(coco_gt))  # the one COCO-file reader (orjson when installed)


def _quiet_load_res(gt: COCO, results: List[Dict[str, Any]]) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return gt.loadRes(results)


def _run_pycocotools(gt: COCO, results: List[Dict[str, Any]], iou_type: str) -> COCOeval:
    dt = _quiet_load_res(gt, results)
    ev = COCOeval(gt, dt, iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _run_fast(gt: COCO, results: List[Dict[str, Any]], iou_type: str) -> Any:
    from faster_coco_eval import COCO as FCOCO
    from faster_coco_eval import COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        fgt = FCOCO()
        # Copies of the annotation dicts: faster-coco-eval adds keys ('ignore', 'rle') to them.
        fgt.dataset = {**gt.dataset, "annotations": [dict(a) for a in gt.dataset.get("annotations", [])]}
        fgt.createIndex()
        fdt = fgt.loadRes(copy.copy(results))
        ev = COCOeval_faster(fgt, fdt, iou_type, print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _fast_available() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def _per_class_ap(precision: np.ndarray) -> np.ndarray:
    """AP per class from COCOeval's precision [T, R, K, A, M]: all areas, maxDets=100; -1 = no GT."""
    p = precision[:, :, :, 0, -1]
    valid = p > -1
    counts = valid.sum(axis=(0, 1))
    sums = np.where(valid, p, 0.0).sum(axis=(0, 1))
    return np.where(counts > 0, sums / np.maximum(counts, 1), -1.0)


def evaluate_coco(
    coco_gt: Union[COCO, str],
    results: List[Dict[str, Any]],
    iou_types: Sequence[str] = IOU_TYPES,
    backend: str = "pycocotools",
    label_names: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """Evaluate COCO-format results against ground truth.

    Returns ``{iou_type: {"stats": [12 floats], <STAT_NAMES>: float}, "per_class_AP": {iou_type:
    {label: ap}}, "backend": the backend that ran}`` (``pycocotools`` where ``fast`` is asked for but
    faster-coco-eval is not installed). Labels are the category names (or ``label_names`` in ascending
    category-id order). With no results every stat is 0.0 (pycocotools cannot load an empty result list).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"Evaluate.backend={backend!r} is not one of {list(BACKENDS)}")
    for t in iou_types:
        if t not in IOU_TYPES:
            raise ConfigError(f"unknown IoU type {t!r}; expected one of {list(IOU_TYPES)}")
    gt = load_gt(coco_gt)
    cat_ids = sorted(gt.getCatIds())
    if label_names is None:
        label_names = [gt.cats[c]["name"] for c in cat_ids]
    use_fast = backend == "fast" and _fast_available()
    if backend == "fast" and not use_fast:
        log.warning("Evaluate.backend=fast needs faster-coco-eval; using pycocotools (same numbers)")
    out: Dict[str, Any] = {"per_class_AP": {}, "backend": "fast" if use_fast else "pycocotools"}
    for t in iou_types:
        if not results:
            stats = np.zeros(12)
            per_class = np.zeros(len(cat_ids))
        else:
            ev = _run_fast(gt, results, t) if use_fast else _run_pycocotools(gt, results, t)
            stats = np.asarray(ev.stats[:12], dtype=np.float64)
            precision = np.asarray(ev.eval["precision"], dtype=np.float64)
            # Order the class axis like cat_ids (COCOeval uses params.catIds = sorted ids as well).
            per_class = _per_class_ap(precision)
        entry: Dict[str, Any] = {"stats": [float(s) for s in stats]}
        entry.update({name: float(s) for name, s in zip(STAT_NAMES, stats)})
        out[t] = entry
        out["per_class_AP"][t] = {str(n): float(a) for n, a in zip(label_names, per_class)}
    return out


def summary_lines(stats: Sequence[float], iou_type: str) -> List[str]:
    """pycocotools' 12-line summary text for ``stats`` (same format as COCOeval.summarize)."""
    fmt = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    rows = [
        (1, None, "all", 100), (1, 0.5, "all", 100), (1, 0.75, "all", 100),
        (1, None, "small", 100), (1, None, "medium", 100), (1, None, "large", 100),
        (0, None, "all", 1), (0, None, "all", 10), (0, None, "all", 100),
        (0, None, "small", 100), (0, None, "medium", 100), (0, None, "large", 100),
    ]
    lines = []
    for (ap, thr, area, md), s in zip(rows, stats):
        title = "Average Precision" if ap else "Average Recall"
        short = "(AP)" if ap else "(AR)"
        iou = "0.50:0.95" if thr is None else f"{thr:0.2f}"
        lines.append(fmt.format(title, short, iou, area, md, s))
    return lines
