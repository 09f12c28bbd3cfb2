"""ONNX Runtime next to Paddle Inference on one exported full-size model: do they give the same detections,
and how fast is each.

The model (default MaskRCNN-ResNet50-FPN) gets tools/benchmark_inputs.py's seeded random weights that force
`--detections` per image (as tools/benchmark_models.py does), is exported once with `Export.format=onnx`
(engine.deployment.exporter: the Paddle graphs and model.onnx; R-CNN mask logits scaled by 100 first, or
random weights leave every mask pixel within float32 rounding of the 0.5 threshold), and both runtimes are
fed the same preprocessed `--size` image. Each side runs in its own process, timed alternately (paddle,
onnx, paddle, ...) so machine noise hits both; each reports its best time over the rounds, and the line ends
with their ratio.

The check: the last round's outputs of the two sides have the same detection count and classes, boxes within
`--box-tol` px (1e-3) and every mask's IoU >= `--mask-iou` (0.99; boxes thinner than a pixel left out, see
`compare`); the worst box difference and mask IoU are printed, and the exit code is 1 when a bound is
missed.

    python tools/benchmark_onnx.py --threads 2 --detections 16 [--run-mode auto] [--graphs auto]

`--run-mode` / `--graphs`: Paddle Inference's side as in tools/benchmark_models.py (auto = oneDNN on CPU,
with the compiled-operator graph when it loads; portable = Paddle's own ops only).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inputs import REPO, export_with_weights, exported_feeds, make_weights  # noqa: E402
from benchmark_models import _time, run_exported  # noqa: E402

sys.path.insert(0, str(REPO))
from engine.deployment.high_performance import HPIP, RUN_MODES  # noqa: E402  (no Paddle import)

OUTPUTS = ["bbox", "bbox_num", "mask"]
MASK_LOGIT_GAIN = 100.0


def _scale_mask_logits(model) -> None:
    """Random mask logits sit near 0: scaled, so a mask pixel is not a coin flip on float32 rounding."""
    logits = getattr(getattr(model, "mask_head", None), "mask_fcn_logits", None)
    if logits is not None:
        logits.weight.set_value(logits.weight.numpy() * MASK_LOGIT_GAIN)


def _worker(args) -> Dict:
    """One side's times; its outputs of the last run go to `--outputs` (npz)."""
    feeds = exported_feeds(*args.size)
    model_dir = Path(args.model_dir)
    holder: Dict[str, Dict[str, np.ndarray]] = {}
    if args.worker == "onnx":
        from engine.deployment.onnx_export import OnnxSession

        session = OnnxSession(model_dir / "model.onnx", threads=args.threads)
        ran = f"onnxruntime CPU fp32, {args.threads} threads"

        def run() -> None:
            holder["out"] = session.run(feeds, OUTPUTS)
    else:
        from engine.deployment.high_performance import predictor_options
        from engine.deployment.inference import DeployPredictor

        deploy = DeployPredictor(model_dir, device="cpu", cpu_threads=args.threads,
                                 **predictor_options(args.run_mode))
        info = deploy.run_info()
        ran = f"{info['run_mode']}: {info['backend']} {info['precision']}, {info['graph']} graph"

        def run() -> None:
            holder["out"] = run_exported(deploy, feeds)

    times = _time(run, args.repeats)
    np.savez(args.outputs, **holder["out"])
    return {"times": times, "ran": ran, "detections": int(holder["out"]["bbox_num"].sum())}


def compare(paddle_out: Dict[str, np.ndarray], onnx_out: Dict[str, np.ndarray]) -> Dict:
    """Counts, classes, worst box difference (px) and worst mask IoU; each ONNX detection is matched to
    the Paddle one of its class with the nearest box (tied scores may come in either order). Masks of boxes
    under a pixel high or wide are left out of the IoU (counted): which pixels such a sliver covers is
    decided by float32 rounding (the forced weights give a few, e.g. 1058 x 0.27 px)."""
    report = {"count": [int(paddle_out["bbox_num"].sum()), int(onnx_out["bbox_num"].sum())]}
    p_rows, o_rows = paddle_out["bbox"], onnx_out["bbox"]
    report["same_classes"] = sorted(p_rows[:, 0].tolist()) == sorted(o_rows[:, 0].tolist())
    if report["count"][0] != report["count"][1] or not report["same_classes"]:
        return report
    worst_box, worst_iou, free, slivers = 0.0, 1.0, list(range(len(p_rows))), 0
    for o_index, row in enumerate(o_rows):
        candidates = [i for i in free if p_rows[i, 0] == row[0]]
        nearest = min(candidates, key=lambda i: float(np.abs(p_rows[i, 2:] - row[2:]).max()))
        free.remove(nearest)
        worst_box = max(worst_box, float(np.abs(p_rows[nearest, 2:] - row[2:]).max()))
        if min(row[4] - row[2], row[5] - row[3]) < 1.0:
            slivers += 1
            continue
        a, b = paddle_out["mask"][nearest].astype(bool), onnx_out["mask"][o_index].astype(bool)
        union = np.logical_or(a, b).sum()
        worst_iou = min(worst_iou, float(np.logical_and(a, b).sum() / union) if union else 1.0)
    report.update(worst_box_px=worst_box, worst_mask_iou=worst_iou, sliver_masks_left_out=slivers)
    return report


def _spawn(args, side: str, model_dir: Path, outputs: Path) -> Dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), CUDA_VISIBLE_DEVICES="")
    if args.graphs == "portable":
        env["INSTSEG_NATIVE_OPS"] = "0"
    cmd = [sys.executable, __file__, "--worker", side, "--model-dir", str(model_dir), "--outputs",
           str(outputs), "--threads", str(args.threads), "--repeats", str(args.repeats),
           "--size", *map(str, args.size), "--run-mode", args.run_mode]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{side} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MaskRCNN-ResNet50-FPN")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--size", type=int, nargs=2, default=[800, 1333], help="input (h, w)")
    parser.add_argument("--detections", type=int, default=16, help="forced detections per image")
    parser.add_argument("--run-mode", default="auto", choices=[*RUN_MODES, HPIP],
                        help="Paddle Inference's run mode (auto: oneDNN on CPU)")
    parser.add_argument("--graphs", default="auto", choices=["auto", "portable"],
                        help="Paddle Inference's graph: auto (compiled operators when they load), portable")
    parser.add_argument("--box-tol", type=float, default=1e-3, help="px")
    parser.add_argument("--mask-iou", type=float, default=0.99)
    parser.add_argument("--worker", choices=["paddle", "onnx"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--outputs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        weights, model_dir = os.path.join(tmp, "weights.pdparams"), Path(tmp) / "inference"
        make_weights(args.model, weights, detections=args.detections > 0)
        export_with_weights(args.model, weights, args.detections, str(model_dir), onnx=True,
                            adjust=_scale_mask_logits)
        best: Dict[str, float] = {}
        info: Dict[str, Dict] = {}
        for _ in range(args.rounds):
            for side in ("paddle", "onnx"):
                info[side] = _spawn(args, side, model_dir, Path(tmp) / f"{side}.npz")
                best[side] = min([best.get(side, float("inf"))] + info[side]["times"])
        report = compare(dict(np.load(Path(tmp) / "paddle.npz")), dict(np.load(Path(tmp) / "onnx.npz")))
    h, w = args.size
    line = f"{args.model} {h}x{w} detections {args.detections}"
    for side in ("paddle", "onnx"):
        line += f" | {side} {best[side]:.2f} s ({info[side]['ran']}, detections {info[side]['detections']})"
    print(line + f" | onnx/paddle {best['onnx'] / best['paddle']:.2f} | threads {args.threads}")
    ok = (report["count"][0] == report["count"][1] and report["same_classes"]
          and report.get("worst_box_px", np.inf) <= args.box_tol
          and report.get("worst_mask_iou", 0.0) >= args.mask_iou)
    print(f"check: {json.dumps(report)} -> {'within' if ok else 'OUTSIDE'} the bounds "
          f"(boxes <= {args.box_tol} px, mask IoU >= {args.mask_iou})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
