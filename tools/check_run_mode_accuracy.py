"""Mask and box AP of an exported model with each run mode on a COCO dataset, and each one's change
against run_mode paddle (Paddle's own fp32 kernels): the accuracy guard of reduced-precision run modes.

    python tools/check_run_mode_accuracy.py --model-dir output/best_model/inference \
        --dataset-dir demo_data/instance_seg [--split val] [--run-modes paddle mkldnn mkldnn_bf16] \
        [--threads 2] [--backend pycocotools|fast] [--out accuracy.json [--force]]

Default run modes: those this machine runs (paddle; mkldnn when Paddle has oneDNN; mkldnn_bf16 when the CPU
has native bf16); paddle, the reference, always runs. A run mode this machine cannot run (mkldnn_bf16
without AVX512_BF16 / AMX) is listed as not measured rather than measured as something else. Predictions
are the exported model's raw outputs (no score threshold), turned into COCO results and scored by
engine.evaluation, as `Global.mode=evaluate` does.
For each reduced precision the tool prints the MEASURED_AP_CHANGE entry
(engine/deployment/high_performance.py) to paste, so use_hpip may pick it when the drop is within
MAX_AP_DROP points.
"""
import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config.model_names import MODEL_FAMILIES  # noqa: E402
from engine.data.coco import CocoInstances  # noqa: E402
from engine.deployment import high_performance as hp  # noqa: E402
from engine.errors import DatasetError, InstSegError  # noqa: E402
from engine.evaluation.coco_metrics import BACKENDS, evaluate_coco  # noqa: E402
from engine.evaluation.evaluator import batch_to_coco  # noqa: E402
from engine.runtime.atomic_io import write_json  # noqa: E402

MEASURABLE = ("paddle", "mkldnn", "mkldnn_bf16")  # CPU run modes


def available_run_modes() -> List[str]:
    """The CPU run modes this machine runs as themselves."""
    modes = ["paddle"]
    if hp.onednn_available():
        modes.append("mkldnn")
        if hp.cpu_features.cpu_has_fast_bf16():
            modes.append("mkldnn_bf16")
    return modes


def evaluate_run_mode(model_dir: str, data: CocoInstances, run_mode: str, threads: int,
                      backend: str) -> Dict[str, Any]:
    """{run_mode, backend, precision, AP (mask), bbox_AP, detections} of `model_dir` on `data`, or
    {run_mode, skipped: why} when the machine would run another mode in its place."""
    from engine.deployment.inference import DeployPredictor

    deploy = DeployPredictor(model_dir, device="cpu", cpu_threads=threads, run_mode=run_mode)
    if deploy.run_mode != run_mode:
        return {"run_mode": run_mode, "skipped": f"this machine runs {deploy.run_mode} in its place "
                                                 f"({deploy.choice.reason})"}
    if len(deploy.labels) != len(data.cat_ids):
        raise DatasetError(f"{model_dir} predicts {len(deploy.labels)} classes but {data.ann_file} has "
                           f"{len(data.cat_ids)} categories; use the dataset the model was trained on.")
    results: List[Dict[str, Any]] = []
    has_mask = False
    for image_id in data.image_ids:
        path = data.root / "images" / str(data.coco.imgs[image_id]["file_name"])
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"Image {path} (image id {image_id}) is missing or unreadable")
        out = deploy.raw([image])
        has_mask = has_mask or "mask" in out
        results += batch_to_coco(out, [image_id], [image.shape[:2]], data.cat_ids)
    iou_types = ("bbox", "segm") if has_mask else ("bbox",)
    coco = evaluate_coco(data.coco, results, iou_types, backend=backend, label_names=data.label_names)
    info = deploy.choice.as_json()
    return {"run_mode": run_mode, "backend": info["backend"], "precision": info["precision"],
            "AP": coco["segm"]["AP"] if has_mask else None, "bbox_AP": coco["bbox"]["AP"],
            "detections": len(results)}


def ap_changes(rows: List[Dict[str, Any]]) -> None:
    """Add each measured row's AP change against the paddle row, in AP points (0-100), and whether the
    worst drop is within MAX_AP_DROP."""
    base = next((r for r in rows if r["run_mode"] == "paddle" and "skipped" not in r), None)
    for row in rows:
        if base is None or "skipped" in row:
            continue
        row["mask_AP_change"] = _points(row["AP"], base["AP"])
        row["bbox_AP_change"] = _points(row["bbox_AP"], base["bbox_AP"])
        change = hp.APChange(row["mask_AP_change"], row["bbox_AP_change"], "")
        row["within_limit"] = change.worst_drop() <= hp.MAX_AP_DROP


def _points(value: Optional[float], base: Optional[float]) -> Optional[float]:
    return None if value is None or base is None else round(100.0 * (value - base), 2)


def _report(rows: List[Dict[str, Any]], family: Optional[str], source: str) -> List[str]:
    lines = [f"{'run mode':<12} {'backend':<8} {'prec':<5} {'mask AP':>8} {'box AP':>8} {'Δmask':>7} "
             f"{'Δbox':>7}  within {hp.MAX_AP_DROP} pt"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['run_mode']:<12} not measured: {r['skipped']}")
            continue
        lines.append(f"{r['run_mode']:<12} {r['backend']:<8} {r['precision']:<5} {_ap(r['AP']):>8} "
                     f"{_ap(r['bbox_AP']):>8} {_pt(r.get('mask_AP_change')):>7} "
                     f"{_pt(r.get('bbox_AP_change')):>7}  {r.get('within_limit', '-')}")
    for r in rows:
        if r.get("precision") in ("bf16", "fp16") and "mask_AP_change" in r:
            lines.append(f'MEASURED_AP_CHANGE["{family}"]["{r["run_mode"]}"] = APChange(mask='
                         f'{r["mask_AP_change"]}, box={r["bbox_AP_change"]}, source="{source}")')
    return lines


def _ap(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4f}"


def _pt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:+.2f}"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, help="exported model folder (inference.yml + graph)")
    ap.add_argument("--dataset-dir", required=True, help="COCO dataset root (images/, annotations/)")
    ap.add_argument("--split", default="val", choices=("train", "val"))
    ap.add_argument("--run-modes", nargs="+", choices=MEASURABLE, help="default: those this machine runs")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    ap.add_argument("--backend", choices=BACKENDS, default="pycocotools", help="COCO evaluation backend")
    ap.add_argument("--out", help="write the report as JSON here")
    ap.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    args = ap.parse_args(argv)
    try:
        if args.out and Path(args.out).exists() and not args.force:
            raise DatasetError(f"{args.out} exists; pass --force to overwrite it")
        data = CocoInstances(args.dataset_dir, args.split)
        modes = list(dict.fromkeys(["paddle", *(args.run_modes or available_run_modes())]))
        rows = [evaluate_run_mode(args.model_dir, data, m, args.threads, args.backend) for m in modes]
    except InstSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    ap_changes(rows)
    from engine.deployment.inference import read_inference_config

    model_name = read_inference_config(args.model_dir)[0].get("model_name")
    family = MODEL_FAMILIES.get(str(model_name))
    source = (f"tools/check_run_mode_accuracy.py: {model_name}, {data.ann_file} ({len(data.image_ids)} "
              f"images)")
    print(f"{model_name} ({family}) on {data.ann_file}, {len(data.image_ids)} images; AP changes in points "
          f"against run_mode paddle")
    print("\n".join(_report(rows, family, source)))
    if args.out:
        write_json(args.out, {"model_dir": args.model_dir, "model_name": model_name, "family": family,
                              "annotations": str(data.ann_file), "images": len(data.image_ids),
                              "max_ap_drop": hp.MAX_AP_DROP, "run_modes": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
