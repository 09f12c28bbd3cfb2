"""Benchmark: COCO evaluation (bbox + segm) through evaluate_coco's backends vs pycocotools run directly.

    python tools/benchmark_eval.py [--images 5000] [--per-image 100] [--backends fast pycocotools]

Generates a COCO-val-scale set in memory (default 5,000 480x640 images, ~36k GT instances as polygons
with 1% crowd regions as uncompressed RLE, 80 categories; 100 detections per image with compressed-RLE
masks, most of them perturbed copies of GT instances). Masks stay RLE end to end, never bitmaps.
Each side is timed in this same process, from the result list to the 12 stats of both IoU types
(pycocotools: loadRes + evaluate + accumulate + summarize per IoU type), and the stats are compared.
"""
import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.evaluation.coco_metrics import evaluate_coco  # noqa: E402

H, W = 480, 640


def _poly(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float) -> List[float]:
    ang = np.sort(rng.uniform(0, 2 * np.pi, 8))
    r = rng.uniform(0.7, 1.0, 8)
    xs = np.clip(cx + rx * r * np.cos(ang), 0, W - 1)
    ys = np.clip(cy + ry * r * np.sin(ang), 0, H - 1)
    return np.round(np.stack([xs, ys], 1).reshape(-1), 2).tolist()


def make_data(n_images: int, per_image: int, seed: int = 0) -> Tuple[COCO, List[Dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    aid = 1
    for img_id in range(1, n_images + 1):
        images.append({"id": img_id, "height": H, "width": W, "file_name": f"{img_id:012d}.jpg"})
        n_gt = int(rng.poisson(7.2))
        polys, cats = [], []
        for _ in range(n_gt):
            rx, ry = np.exp(rng.uniform(np.log(4), np.log(200), 2))
            cx, cy = rng.uniform(0, W), rng.uniform(0, H)
            polys.append(_poly(rng, cx, cy, rx, ry))
            cats.append(int(rng.integers(1, 81)))
        rles = mask_utils.frPyObjects(polys, H, W) if polys else []
        for poly, rle, cat in zip(polys, rles, cats):
            crowd = rng.random() < 0.01
            seg: Any = [poly]
            if crowd:
                flat = mask_utils.decode(rle).flatten(order="F")
                edges = np.flatnonzero(np.diff(flat)) + 1
                counts = np.diff(np.concatenate([[0], edges, [flat.size]]))
                seg = {"size": [H, W], "counts": ([0] if flat[0] else []) + counts.tolist()}
            x, y, w, h = mask_utils.toBbox(rle).tolist()
            anns.append({"id": aid, "image_id": img_id, "category_id": cat, "iscrowd": int(crowd),
                         "segmentation": seg, "area": float(mask_utils.area(rle)), "bbox": [x, y, w, h]})
            aid += 1
        det_polys, det_cats = [], []
        for k in range(per_image):
            if polys and k < 4 * len(polys):
                src = np.array(polys[k % len(polys)]).reshape(-1, 2)
                jitter = rng.normal(0, 3 + k // len(polys) * 4, size=2) + rng.normal(0, 1.5, src.shape)
                p = np.clip(src + jitter, 0, [W - 1, H - 1])
                det_polys.append(np.round(p.reshape(-1), 2).tolist())
                det_cats.append(cats[k % len(polys)] if rng.random() < 0.9 else int(rng.integers(1, 81)))
            else:
                rx, ry = np.exp(rng.uniform(np.log(3), np.log(120), 2))
                det_polys.append(_poly(rng, rng.uniform(0, W), rng.uniform(0, H), rx, ry))
                det_cats.append(int(rng.integers(1, 81)))
        drles = mask_utils.frPyObjects(det_polys, H, W)
        boxes = mask_utils.toBbox(drles).tolist()
        scores = rng.random(per_image).tolist()
        for rle, box, cat, s in zip(drles, boxes, det_cats, scores):
            results.append({"image_id": img_id, "category_id": cat, "score": s, "bbox": box,
                            "segmentation": {"size": [H, W], "counts": rle["counts"].decode("ascii")}})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 81)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt, results


def pycocotools_direct(gt: COCO, results: List[Dict[str, Any]]) -> Dict[str, np.ndarray]:
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for t in ("bbox", "segm"):
            ev = COCOeval(gt, gt.loadRes(results), t)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[t] = np.asarray(ev.stats)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--per-image", type=int, default=100)
    ap.add_argument("--backends", nargs="+", default=["fast", "pycocotools"])
    args = ap.parse_args()
    t0 = time.perf_counter()
    gt, results = make_data(args.images, args.per_image)
    print(f"data: {len(gt.imgs)} images, {len(gt.anns)} GT instances "
          f"({sum(a['iscrowd'] for a in gt.anns.values())} crowd), {len(results)} detections; "
          f"generated in {time.perf_counter() - t0:.1f} s; cpus {os.cpu_count()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    t = time.perf_counter()
    ref = pycocotools_direct(gt, results)
    t_ref = time.perf_counter() - t
    print(f"pycocotools direct: {t_ref:.1f} s  segm AP {ref['segm'][0]:.4f} bbox AP {ref['bbox'][0]:.4f}")
    for b in args.backends:
        t = time.perf_counter()
        got = evaluate_coco(gt, results, backend=b)
        dt = time.perf_counter() - t
        diff = max(float(np.abs(np.asarray(got[k]["stats"]) - ref[k]).max()) for k in ("bbox", "segm"))
        print(f"evaluate_coco backend={b}: {dt:.1f} s  ratio {dt / t_ref:.2f}  max |stat diff| {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
