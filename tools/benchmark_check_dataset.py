"""Benchmark: full check_dataset validation vs pycocotools' COCO() load of the same file.

    python tools/benchmark_check_dataset.py [--workdir /tmp/instseg_bench] [--images 118287]
        [--instances 860001] [--crowd 0.01] [--repeat 1]

Generates (once, kept in --workdir) a COCO-train-scale annotation file: 118k images, 860k polygon
instances of which ~1% are crowd regions stored as uncompressed RLE like COCO's own, coordinates with two
decimals like COCO's. Image files are empty placeholders, so the check covers their existence and paths,
never their pixels. Then, in one process and in alternating order, times

* pycocotools: `COCO(instance_train.json)` (JSON parse + index), and
* InstSeg: `dataset_tools.validate.validate_split` (JSON parse + every check on every image and
  annotation, image-file existence included; orjson parses when installed, see engine/runtime/json_read.py),

and prints the ratios and each side's peak memory (peak RSS from /proc/self/status VmHWM, each side in a
fresh subprocess; tracemalloc would slow both sides). Target: InstSeg <= 1.0x pycocotools.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def generate(root: Path, num_images: int, num_instances: int, crowd_fraction: float, seed: int = 0) -> Path:
    """Write `root/annotations/instance_train.json` and empty `root/images/*.jpg`; return the JSON path."""
    ann_file = root / "annotations" / "instance_train.json"
    if ann_file.exists():
        return ann_file
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    widths = rng.choice([640, 500, 480, 427], size=num_images)
    heights = rng.choice([480, 375, 640, 333], size=num_images)
    images = []
    for i in range(num_images):
        name = f"{i + 1:012d}.jpg"
        (root / "images" / name).touch()
        images.append({"id": i + 1, "file_name": name, "height": int(heights[i]), "width": int(widths[i])})
    owner = rng.integers(0, num_images, size=num_instances)
    crowd = rng.random(num_instances) < crowd_fraction
    cats = rng.integers(1, 81, size=num_instances)
    num_points = rng.integers(4, 45, size=num_instances)  # ~24 points a polygon on average, as in COCO
    annotations = []
    for k in range(num_instances):
        img = owner[k]
        w, h = int(widths[img]), int(heights[img])
        bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        if crowd[k]:
            runs = rng.integers(1, 200, size=int(rng.integers(50, 400)))
            runs = np.append(runs, max(0, w * h - int(runs.sum())))
            segmentation = {"counts": runs.tolist(), "size": [h, w]}
        else:
            n = int(num_points[k])
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            xs = x0 + bw / 2 * (1 + np.cos(angles))
            ys = y0 + bh / 2 * (1 + np.sin(angles))
            segmentation = [np.round(np.stack([xs, ys], 1).reshape(-1), 2).tolist()]
        annotations.append({
            "segmentation": segmentation, "area": round(float(bw * bh * 0.7), 2), "iscrowd": int(crowd[k]),
            "image_id": int(img) + 1, "bbox": [round(x0, 2), round(y0, 2), round(bw, 2), round(bh, 2)],
            "category_id": int(cats[k]), "id": k + 1,
        })
    categories = [{"id": c, "name": f"class_{c}", "supercategory": "thing"} for c in range(1, 81)]
    with open(ann_file, "w") as fh:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, fh)
    return ann_file


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_side(side: str, root: Path) -> dict:
    """Time one side in this process; returns {seconds, peak_rss_mib, ...}."""
    ann_file = root / "annotations" / "instance_train.json"
    if side == "pycocotools":
        from pycocotools.coco import COCO

        start = time.perf_counter()
        coco = COCO(str(ann_file))
        seconds = time.perf_counter() - start
        info = {"images": len(coco.imgs), "annotations": len(coco.anns)}
    else:
        from dataset_tools.report import ProblemLog
        from dataset_tools.validate import validate_split
        from engine.runtime.json_read import json_backend

        log = ProblemLog()
        start = time.perf_counter()
        split = validate_split(root, "train", log, bbox_tolerance=2.0)
        seconds = time.perf_counter() - start
        info = {"images": split.num_images, "annotations": split.num_instances,
                "errors": log.num_errors, "warnings": log.num_warnings, "json": json_backend()}
    return {"side": side, "seconds": round(seconds, 2), "peak_rss_mib": round(_peak_rss_mib()), **info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/instseg_bench")
    parser.add_argument("--images", type=int, default=118287)
    parser.add_argument("--instances", type=int, default=860001)
    parser.add_argument("--crowd", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each round runs both sides")
    parser.add_argument("--side", choices=("pycocotools", "instseg"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = Path(args.workdir)
    if args.side:  # child process: one side, result as JSON on stdout
        print(json.dumps(run_side(args.side, root)))
        return
    start = time.perf_counter()
    ann_file = generate(root, args.images, args.instances, args.crowd)
    print(f"dataset: {ann_file} ({ann_file.stat().st_size / 2**20:.0f} MiB, "
          f"ready in {time.perf_counter() - start:.0f} s)")
    results = {"pycocotools": [], "instseg": []}
    for r in range(args.repeat):
        order = ("pycocotools", "instseg") if r % 2 == 0 else ("instseg", "pycocotools")
        for side in order:
            cmd = [sys.executable, __file__, "--workdir", str(root), "--side", side]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            results[side].append(res)
            print(json.dumps(res))
    coco = min(r["seconds"] for r in results["pycocotools"])
    ours = min(r["seconds"] for r in results["instseg"])
    rounds = [o["seconds"] / c["seconds"] for o, c in zip(results["instseg"], results["pycocotools"])]
    peak = {side: max(r["peak_rss_mib"] for r in results[side]) for side in results}
    print(f"best of {args.repeat}: pycocotools COCO() {coco:.2f} s, InstSeg full validation {ours:.2f} s, "
          f"ratio {ours / coco:.2f}; per round {', '.join(f'{r:.2f}' for r in rounds)} (target <= 1.0); "
          f"peak RSS {peak['pycocotools']} MiB / {peak['instseg']} MiB")


if __name__ == "__main__":
    main()
