"""Test helpers: a few-image copy of the demo dataset and the overrides that make the demo Mask R-CNN tiny,
for tests that run the real model and the real loader through main.py in seconds."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo_data" / "instance_seg"

# the demo Mask R-CNN (configs/demo.yaml) at 64 px with narrow layers
TINY = ["Architecture.base_channels=8", "Architecture.fpn_channels=16", "Architecture.box_head_dim=32",
        "Architecture.mask_head_channels=8", "TrainReader.short_sizes=[64]", "TrainReader.max_size=64",
        "EvalReader.target_size=[64, 64]", "Train.batch_size=2",
        "Evaluate.batch_size=2", "Train.warmup_steps=2", "Train.log_interval=1", "Global.cpu_threads=1"]


def demo_subset(root: Path, train: int, val: int) -> Path:
    """The first `train` / `val` images of the demo dataset (with their annotations) under `root`."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    for split, count in (("train", train), ("val", val)):
        doc = json.loads((DEMO / "annotations" / f"instance_{split}.json").read_text())
        doc["images"] = doc["images"][:count]
        kept = {im["id"] for im in doc["images"]}
        doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in kept]
        for im in doc["images"]:
            shutil.copy(DEMO / "images" / im["file_name"], root / "images" / im["file_name"])
        (root / "annotations" / f"instance_{split}.json").write_text(json.dumps(doc))
    return root


def whole_image_val_targets(root: Path) -> None:
    """Replace the val annotations by one whole-image instance per image: a model trained for a few steps
    then already scores a box AP and recall above 0, so comparing two evaluations means something."""
    path = root / "annotations" / "instance_val.json"
    doc = json.loads(path.read_text())
    cats = [c["id"] for c in doc["categories"]]
    doc["annotations"] = [
        {"id": k + 1, "image_id": im["id"], "category_id": cats[k % len(cats)], "iscrowd": 0,
         "bbox": [0, 0, im["width"], im["height"]], "area": im["width"] * im["height"],
         "segmentation": [[0, 0, im["width"], 0, im["width"], im["height"], 0, im["height"]]]}
        for k, im in enumerate(doc["images"])]
    path.write_text(json.dumps(doc))


def main_py(args: Sequence[str], launch: int = 0, env: Optional[Dict[str, str]] = None,
            log_dir: Optional[Path] = None, timeout: float = 900) -> "subprocess.CompletedProcess[str]":
    """`python main.py -o A -o B ...` (under paddle.distributed.launch with `launch` processes when > 0)."""
    cmd: List[str] = [sys.executable]
    if launch:
        cmd += ["-m", "paddle.distributed.launch", "--nproc_per_node", str(launch)]
        cmd += ["--log_dir", str(log_dir)] if log_dir else []
    cmd += [str(REPO / "main.py")] + [part for a in args for part in ("-o", a)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def worker_logs(log_dir: Path) -> str:
    """Everything the launched workers printed."""
    return "".join(p.read_text(errors="replace") for p in sorted(log_dir.glob("workerlog.*")))
