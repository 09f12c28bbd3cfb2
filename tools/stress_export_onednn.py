"""Run exported tiny R-CNN models on random batches with oneDNN and with Paddle's own kernels.

Checks that the default CPU run mode (oneDNN) answers every batch itself (no fallback to Paddle's
kernels, no crash), from "nothing detected" to many detections per image, and reports how often its
detection counts differ from Paddle's kernels' (random tiny models score many boxes alike, so oneDNN's
different float rounding can flip a borderline NMS decision; images without detections must agree):

    python tools/stress_export_onednn.py [--batches 8] [--seed 1] [--out /tmp/stress_export]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paddle  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from engine.config.architectures import RCNNArchitecture  # noqa: E402
from engine.config.schema import InstSegConfig  # noqa: E402
from engine.deployment.exporter import export_model  # noqa: E402
from engine.deployment.inference import DeployPredictor  # noqa: E402
from engine.models.zoo import build_model  # noqa: E402

MODELS = ("MaskRCNN-ResNet50-FPN", "MaskRCNN-ResNet50", "Cascade-MaskRCNN-ResNet50-FPN")
SCORE_BIASES = (-20.0, -3.0, 0.0, 3.0)  # nothing detected ... up to keep_top_k detections


def export_config(root: Path, name: str) -> OmegaConf:
    data = root / "data"
    (data / "annotations").mkdir(parents=True, exist_ok=True)
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(("a", "b", "c"))]
    (data / "annotations" / "instance_val.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": cats}))
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.model, cfg.Global.dataset_dir, cfg.Global.output = name, str(data), str(root / "output")
    cfg.Train.num_classes = 3
    cfg.EvalReader.target_size = [64, 96]
    return cfg


def tiny_model(name: str, bias: float, rng: np.random.Generator) -> paddle.nn.Layer:
    anchors = [16, 32, 64, 128, 256] if "FPN" in name else [32, 64, 128, 256, 512]
    arch = RCNNArchitecture(base_channels=16, fpn_channels=32, box_head_dim=64, mask_head_channels=16,
                            mask_head_convs=1, anchor_sizes=anchors, freeze_at=-1, freeze_norm=False,
                            rpn_post_nms_top_n_test=50, rpn_pre_nms_top_n_test=100)
    paddle.seed(int(rng.integers(1000)))
    model = build_model(name, arch, 3)
    head = model.bbox_head
    for layer in (head.scorers if hasattr(head, "scorers") else [head.bbox_score]):
        values = layer.bias.numpy()
        values[:3] = bias + rng.normal(size=3)
        layer.bias.set_value(values)
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8, help="random batches per model and score bias")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="/tmp/stress_export")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    failures = runs = differing = 0
    for name in MODELS:
        for bias in SCORE_BIASES:
            root = Path(args.out) / f"{name}_{bias}"
            export_model(tiny_model(name, bias, rng), export_config(root, name), str(root / "inference"))
            onednn = DeployPredictor(root / "inference", device="cpu", cpu_threads=1)  # auto: oneDNN
            native = DeployPredictor(root / "inference", device="cpu", cpu_threads=1, run_mode="paddle")
            for _ in range(args.batches):
                count = int(rng.integers(1, 4))
                shapes = [(int(rng.integers(8, 120)), int(rng.integers(8, 120))) for _ in range(count)]
                batch = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
                got, ref = onednn.raw(batch)["bbox_num"].tolist(), native.raw(batch)["bbox_num"].tolist()
                empty_agree = all((g == 0) == (r == 0) for g, r in zip(got, ref))
                ok = empty_agree and onednn._fallback is None
                failures += not ok
                differing += got != ref
                runs += 1
                print(f"{name} bias {bias:+.0f} {shapes} detections {got}"
                      f"{'' if got == ref else f' (paddle kernels: {ref})'}"
                      f"{' FELL BACK to paddle' if onednn._fallback is not None else ''}"
                      f"{'' if empty_agree else ' EMPTY MISMATCH'}", flush=True)
    print(f"{runs} batches, {failures} failures, {differing} with other detection counts than Paddle's "
          f"kernels (run mode {onednn.run_mode})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
