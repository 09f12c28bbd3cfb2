"""Exported model (Paddle Inference) vs dynamic graph: CPU time per image at 800x1333.

    python tools/benchmark_predict.py --model MaskRCNN-ResNet50-FPN --threads 2 --repeat 3 [--run-mode paddle]

`--run-mode` is a DeployPredictor run mode or `hpip` (what use_hpip picks on this machine).

Builds the model with 80 classes and seeded random weights (no pretrained weights are available offline),
raises one class's score bias so every image yields the full keep_top_k detections (the worst case for the
mask branch), exports it, and times `DeployPredictor.raw` against the dynamic graph's forward on the same
preprocessed 800x1333 input (median of --repeat runs after one warm-up each). Threads: --threads for
both sides (Paddle Inference's math-library threads; OMP/MKL threads for the dynamic graph).
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MaskRCNN-ResNet50-FPN")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--run-mode", default="paddle",
                        help="DeployPredictor run_mode (paddle, mkldnn, mkldnn_bf16, ...) or hpip (use_hpip)")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1333)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before Paddle loads its math libraries
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    import numpy as np
    import paddle
    from omegaconf import OmegaConf

    from engine.config.schema import InstSegConfig
    from engine.deployment.exporter import export_model
    from engine.deployment.high_performance import predictor_options
    from engine.deployment.inference import DeployPredictor
    from engine.models.zoo import build_model

    paddle.set_device("cpu")
    paddle.seed(0)
    model = build_model(args.model, None, 80)
    head = model.bbox_head
    for layer in (head.scorers if hasattr(head, "scorers") else [head.bbox_score]):
        bias = layer.bias.numpy()
        bias[0] = 10.0  # class 0 wins every RoI: keep_top_k detections per image
        layer.bias.set_value(bias)
    model.eval()
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.model = args.model
    cfg.Global.dataset_dir = tempfile.mkdtemp()  # no annotations: generic label names
    cfg.Global.output = cfg.Global.dataset_dir
    cfg.Train.num_classes = 80
    out = Path(tempfile.mkdtemp()) / "inference"
    t0 = time.perf_counter()
    export_model(model, cfg, str(out))
    export_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    deploy = DeployPredictor(out, device="cpu", cpu_threads=args.threads, **predictor_options(args.run_mode))
    feeds = deploy.preprocessor.batch([image])
    inputs = [paddle.to_tensor(feeds[k]) for k in ("image", "im_shape", "scale_factor")]

    def timed(fn):
        fn()
        runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            result = fn()
            runs.append(time.perf_counter() - t)
        return float(np.median(runs)), runs, result

    with paddle.no_grad():
        dyn_s, dyn_runs, dyn_out = timed(lambda: {k: v.numpy() for k, v in model(*inputs).items()})
    dep_s, dep_runs, dep_out = timed(lambda: deploy.raw([image]))
    same = dep_out["bbox_num"].tolist() == dyn_out["bbox_num"].tolist()
    box_err = float(np.abs(dep_out["bbox"] - dyn_out["bbox"]).max()) if same else float("nan")
    mask_diff = float(np.mean(dep_out["mask"] != dyn_out["mask"])) if same else float("nan")
    print(f"model {args.model}, input {feeds['image'].shape[2:]} (from {args.height}x{args.width}), "
          f"threads {args.threads}, run_mode {args.run_mode} -> {deploy.run_mode} {deploy.choice.precision}, "
          f"export {export_s:.1f} s")
    print(f"detections: deploy {dep_out['bbox_num'].tolist()}, dynamic {dyn_out['bbox_num'].tolist()}; "
          f"max |box diff| {box_err:.4f} px, mask pixels differing {mask_diff:.2e}")
    print(f"dynamic graph: {dyn_s:.2f} s/img (runs {', '.join(f'{r:.2f}' for r in dyn_runs)})")
    print(f"exported (Paddle Inference): {dep_s:.2f} s/img (runs {', '.join(f'{r:.2f}' for r in dep_runs)})")
    print(f"ratio exported / dynamic: {dep_s / dyn_s:.2f}")


if __name__ == "__main__":
    main()
