"""Evaluate a COCO results file against ground truth, without a model.

    python tools/eval_results.py --gt instance_val.json --results results.json \
        [--iou-type bbox|segm] [--backend pycocotools|fast] [--out metrics.json]

Prints pycocotools' standard 12-line summary for each IoU type (exactly as COCOeval.summarize prints
it) and a per-class AP table; ``--out`` writes every number as JSON (an existing file is not
overwritten unless ``--force``).
"""
import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.runtime.atomic_io import write_json  # noqa: E402
from engine.evaluation.coco_metrics import (  # noqa: E402
    BACKENDS, IOU_TYPES, evaluate_coco, load_gt, summary_lines)
from engine.errors import DatasetError, InstSegError  # noqa: E402


def _load_results(path: str) -> list:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read results file {path}: {exc}") from exc
    if not isinstance(data, list):
        raise DatasetError(f"{path} must hold a JSON list of COCO result dicts")
    return data


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gt", required=True, help="COCO ground-truth annotation JSON")
    ap.add_argument("--results", required=True, help="COCO results JSON (list of detections)")
    ap.add_argument("--iou-type", choices=IOU_TYPES,
                    help="one IoU type (default: bbox, and segm when results have masks)")
    ap.add_argument("--backend", choices=BACKENDS, default="pycocotools")
    ap.add_argument("--out", help="write the metrics JSON here")
    ap.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    args = ap.parse_args(argv)
    try:
        if args.out and Path(args.out).exists() and not args.force:
            raise DatasetError(f"{args.out} exists; pass --force to overwrite it")
        if not Path(args.gt).is_file():
            raise DatasetError(f"ground-truth file {args.gt} does not exist")
        gt = load_gt(args.gt)
        results = _load_results(args.results)
        if args.iou_type:
            iou_types = (args.iou_type,)
        else:
            iou_types = ("bbox", "segm") if any("segmentation" in r for r in results) else ("bbox",)
        metrics = evaluate_coco(gt, results, iou_types, backend=args.backend)
    except InstSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    for t in iou_types:
        print(f"IoU metric: {t}")
        print("\n".join(summary_lines(metrics[t]["stats"], t)))
        per = metrics["per_class_AP"][t]
        width = max([len("class")] + [len(n) for n in per])
        print(f"\nper-class AP ({t})\n{'class':<{width}}  AP")
        for name, v in per.items():
            print(f"{name:<{width}}  {'  n/a' if v < 0 else f'{v:0.3f}'}")
        print()
    if args.out:
        write_json(args.out, {"gt": args.gt, "results": args.results, "num_results": len(results), **metrics})
    return 0


if __name__ == "__main__":
    sys.exit(main())
