"""Inference and training-step speed of an InstSeg model (R-CNN family, SOLOv2, PP-YOLOE_seg-S) next to
PaddleDetection develop.

Both sides load the same weights (ours, saved with PaddleDetection's names), run on the same
image with the same thread count, and are timed alternately in separate processes (ours, peer,
ours, peer, ...) so machine noise hits both. The classifier scores follow a bias raised for 4 classes,
so every candidate scores above the threshold for each of them (R-CNN: the RPN's box deltas are zero, so
the proposals are anchors spread over the image; PP-YOLOE: the box distributions differ per anchor): the
detection count reaches `keep_top_k` (reported). `--detections 0` lowers every class bias instead: no
detection at all (keep_top_k stays the model's default).
SOLOv2 (`--model SOLOv2`): 4 class biases raised so that every grid cell is a candidate; `--detections` is
Matrix NMS's post_nms_top_n; PaddleDetection's training step gets Gt2Solov2Target's targets precomputed (its
data loader makes them), ours computes them inside the step.

    python tools/benchmark_rcnn.py --threads 2 --detections 16 100 [--exported] \
        --ppdet-root /path/to/PaddleDetection --ppdet-python /path/to/venv/bin/python
    python tools/benchmark_rcnn.py --model PP-YOLOE_seg-S --size 640 640 --detections 0 300 ...

`--exported` adds a third side for inference: ours exported (engine.deployment.exporter) and run by Paddle
Inference (engine.deployment.inference.DeployPredictor, `--run-mode`), fed the same preprocessed input.
`--run-mode` takes run modes (auto, paddle, mkldnn, mkldnn_bf16, ...) and `hpip` (what use_hpip picks on
this machine); several make one exported side each, timed alternately with the others, each reporting the
run mode and precision that ran, and their time ratios to the first:

    python tools/benchmark_rcnn.py --threads 2 --detections 16 --tasks infer --exported --run-mode auto hpip

`--ppdet-root` is a checkout of PaddleDetection develop (not committed here); without it only ours
runs. PaddleDetection's side needs numpy<2 in its own environment, hence `--ppdet-python`.

Ours runs as the CLI does on CPU, with engine.runtime.malloc_tuning (`--no-malloc-tuning`: without);
`--ppdet-malloc-tuning` gives PaddleDetection the same glibc settings, for a like-for-like comparison.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from engine.deployment.high_performance import HPIP, RUN_MODES  # noqa: E402  (no Paddle import)
PPDET_CONFIGS = {
    "MaskRCNN-ResNet50-FPN": "configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.yml",
    "MaskRCNN-ResNet50": "configs/mask_rcnn/mask_rcnn_r50_1x_coco.yml",
    "Cascade-MaskRCNN-ResNet50-FPN": "configs/cascade_rcnn/cascade_mask_rcnn_r50_fpn_1x_coco.yml",
    "PP-YOLOE_seg-S": "configs/ppyoloe_seg/ppyoloe_seg_s_80e_coco.yml",
    "SOLOv2": "configs/solov2/solov2_r50_fpn_1x_coco.yml",
}
DEFAULT_KEEP_TOP_K = {"rcnn": 100, "ppyoloe_seg": 300, "solov2": 100}  # ppdet's, used with --detections 0
KEEP_TOP_K_KEY = {"solov2": "post_nms_top_n"}  # our Architecture key where it is not keep_top_k


def _family(model: str) -> str:
    sys.path.insert(0, str(REPO))
    from engine.config.model_names import MODEL_FAMILIES

    return MODEL_FAMILIES[model]


def _arch(model: str, keep_top_k: int):
    """Our Architecture section for `model` with `keep_top_k` detections per image."""
    from engine.config.architectures import FAMILY_ARCHITECTURES

    family = _family(model)
    return FAMILY_ARCHITECTURES[family](**{KEEP_TOP_K_KEY.get(family, "keep_top_k"): keep_top_k})


def _set_ppdet_keep_top_k(cfg, model: str, keep_top_k: int) -> None:
    """Set the detections per image in PaddleDetection's config for `model`."""
    family = _family(model)
    if family == "solov2":
        cfg["MaskMatrixNMS"]["post_nms_top_n"] = keep_top_k
    else:
        nms = cfg["PPYOLOEInsHead"]["nms"] if family == "ppyoloe_seg" else cfg["BBoxPostProcess"]["nms"]
        nms["keep_top_k"] = keep_top_k


def _ppdet_solov2_batch(images, boxes):
    """PaddleDetection's SOLOv2 training inputs: the batch through its Gt2Solov2Target (its loader's job)."""
    import numpy as np
    import paddle
    from ppdet.data.transform.batch_operators import Gt2Solov2Target

    masks = _box_masks(boxes, images.shape[2])
    samples = [{"image": image, "gt_bbox": boxes, "gt_class": np.array([[0], [1]], "int32"), "gt_segm": masks,
                "is_crowd": np.zeros((len(boxes), 1), "int32"), "gt_poly": []} for image in images]
    samples = Gt2Solov2Target()(samples)
    return {k: paddle.to_tensor(np.stack([s[k] for s in samples])) for k in samples[0]}


def _image(height: int, width: int):
    """A normalised-looking image of (height, width), zero-padded to a multiple of 32 as the readers do."""
    import numpy as np

    rng = np.random.default_rng(0)
    padded = np.zeros((1, 3, -(-height // 32) * 32, -(-width // 32) * 32), "float32")
    padded[:, :, :height, :width] = rng.normal(0, 1, size=(1, 3, height, width))
    return padded


def _train_batch(batch: int, size: int):
    """Synthetic training inputs: two boxes per image with square polygons / bitmaps."""
    import numpy as np

    rng = np.random.default_rng(1)
    images = rng.normal(0, 1, size=(batch, 3, size, size)).astype("float32")
    boxes = np.array([[20, 30, 150, 170], [160, 100, 300, 260]], "float32")
    return images, boxes


def _time(fn, repeats: int) -> List[float]:
    fn()  # warm-up: first call builds kernels and caches
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _worker_ppdet(args) -> Dict:
    import numpy as np
    import paddle

    sys.path.insert(0, args.ppdet_root)
    sys.path.insert(0, str(Path(__file__).parent))
    from ppdet_import import import_with_stubs

    workspace = import_with_stubs(Path(args.ppdet_root), "ppdet.core.workspace")
    import_with_stubs(Path(args.ppdet_root), "ppdet.modeling")
    paddle.base.core.set_num_threads(args.threads)
    cfg = workspace.load_config(os.path.join(args.ppdet_root, PPDET_CONFIGS[args.model]))
    _set_ppdet_keep_top_k(cfg, args.model, args.keep_top_k)
    if tuple(args.size) != (640, 640):
        cfg["eval_size"] = None  # PP-YOLOE's anchors are precomputed for 640 x 640 unless this is unset
    create = workspace.create
    model = create(cfg.architecture)
    model.set_state_dict(paddle.load(args.weights))
    result: Dict = {"side": "ppdet"}
    if args.task == "infer":
        h, w = args.size
        inputs = {"image": paddle.to_tensor(_image(h, w)),
                  "im_shape": paddle.to_tensor([[float(h), float(w)]]),
                  "scale_factor": paddle.to_tensor([[1.0, 1.0]])}
        model.eval()
        holder = {}

        def run():
            with paddle.no_grad():
                holder["out"] = model(inputs)

        result["times"] = _time(run, args.repeats)
        out = holder["out"]
        if "cate_score" in out:  # SOLOv2: its placeholder rows score under MaskMatrixNMS's update threshold
            result["detections"] = int((out["cate_score"].numpy() >= 0.05).sum())
        else:
            result["detections"] = int(out["bbox_num"].numpy().sum())
    else:
        images, boxes = _train_batch(args.batch, args.train_size)
        n = args.batch
        inputs = {"image": paddle.to_tensor(images),
                  "im_shape": paddle.to_tensor([[float(args.train_size)] * 2] * n),
                  "scale_factor": paddle.to_tensor([[1.0, 1.0]] * n),
                  "gt_bbox": [paddle.to_tensor(boxes) for _ in range(n)],
                  "gt_class": [paddle.to_tensor([[0], [1]], dtype="int32") for _ in range(n)],
                  "is_crowd": [paddle.to_tensor([[0], [0]], dtype="int32") for _ in range(n)],
                  "epoch_id": 0}
        if _family(args.model) == "ppyoloe_seg":  # PadGT's fields: bitmaps and a padding mask
            masks = _box_masks(boxes, args.train_size)
            inputs["gt_segm"] = [paddle.to_tensor(masks) for _ in range(n)]
            inputs["pad_gt_mask"] = [paddle.ones([2, 1]) for _ in range(n)]
        else:
            inputs["gt_poly"] = [[[np.array([b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]], "float32")]
                                  for b in boxes]] * n
        if _family(args.model) == "solov2":
            inputs = _ppdet_solov2_batch(images, boxes)
        model.train()
        opt = paddle.optimizer.Momentum(0.001, parameters=model.parameters())

        def step():
            loss = model(inputs)["loss"]
            loss.backward()
            opt.step()
            opt.clear_grad()

        result["times"] = _time(step, args.repeats)
    return result


def _worker_ours(args) -> Dict:
    import paddle

    sys.path.insert(0, str(REPO))
    from engine.runtime.malloc_tuning import keep_freed_memory
    from engine.models.zoo import build_model

    paddle.base.core.set_num_threads(args.threads)
    if args.onednn:
        paddle.set_flags({"FLAGS_use_mkldnn": True})
    keep_freed_memory()  # what engine.runtime.device.setup_device does on CPU (INSTSEG_MALLOC_TUNING=0: not)
    model = build_model(args.model, _arch(args.model, args.keep_top_k), 80)
    model.set_state_dict(paddle.load(args.weights))
    result: Dict = {"side": "ours"}
    if args.task == "infer":
        h, w = args.size
        image = paddle.to_tensor(_image(h, w))
        im_shape = paddle.to_tensor([[float(h), float(w)]])
        scale = paddle.to_tensor([[1.0, 1.0]])
        model.eval()
        holder = {}

        def run():
            with paddle.no_grad():
                holder["out"] = model(image, im_shape, scale)

        result["times"] = _time(run, args.repeats)
        result["detections"] = int(holder["out"]["bbox_num"].numpy().sum())
    else:
        images, boxes = _train_batch(args.batch, args.train_size)
        n, size = args.batch, args.train_size
        masks = _box_masks(boxes, size)
        batch = {"image": paddle.to_tensor(images),
                 "im_shape": paddle.to_tensor([[float(size)] * 2] * n),
                 "scale_factor": paddle.to_tensor([[1.0, 1.0]] * n),
                 "gt_bbox": [paddle.to_tensor(boxes) for _ in range(n)],
                 "gt_class": [paddle.to_tensor([0, 1], dtype="int32") for _ in range(n)],
                 "gt_mask": [paddle.to_tensor(masks) for _ in range(n)],
                 "is_crowd": [paddle.to_tensor([0, 0], dtype="int32") for _ in range(n)]}
        model.train()
        opt = paddle.optimizer.Momentum(0.001, parameters=model.parameters())

        def step():
            loss = paddle.add_n(list(model.loss(batch).values()))
            loss.backward()
            opt.step()
            opt.clear_grad()

        result["times"] = _time(step, args.repeats)
    return result


def _worker_exported(args) -> Dict:
    """Ours, exported with engine.deployment.exporter and run by Paddle Inference
    (engine.deployment.inference.DeployPredictor)."""
    import numpy as np
    import paddle
    from omegaconf import OmegaConf

    sys.path.insert(0, str(REPO))
    from engine.config.schema import InstSegConfig
    from engine.deployment.exporter import export_model
    from engine.deployment.high_performance import predictor_options
    from engine.deployment.inference import DeployPredictor
    from engine.models.zoo import build_model

    paddle.set_device("cpu")
    model = build_model(args.model, _arch(args.model, args.keep_top_k), 80)
    model.set_state_dict(paddle.load(args.weights))
    model.eval()
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.model = args.model
    cfg.Train.num_classes = 80
    with tempfile.TemporaryDirectory() as tmp:
        cfg.Global.dataset_dir = cfg.Global.output = tmp  # no annotations: generic label names
        export_model(model, cfg, os.path.join(tmp, "inference"))
        deploy = DeployPredictor(os.path.join(tmp, "inference"), device="cpu", cpu_threads=args.threads,
                                 **predictor_options(args.run_mode[0]))
        h, w = args.size
        feeds = {"image": _image(h, w), "im_shape": np.array([[h, w]], "float32"),
                 "scale_factor": np.array([[1.0, 1.0]], "float32")}
        outputs = deploy.predictor.get_output_names()

        def run():  # the same preprocessed input as the other sides; outputs copied back as predict does
            deploy._run(deploy.predictor, deploy.run_mode, feeds)
            return {name: deploy.predictor.get_output_handle(h).copy_to_cpu()
                    for name, h in zip(deploy.output_names, outputs)}

        result: Dict = {"side": "exported", "times": _time(run, args.repeats), "ran": deploy.run_info()}
        result["detections"] = int(run()["bbox_num"].sum())
    return result


def _exported_label(modes: List[str], mode: str) -> str:
    """The exported side's name: `exported`, or `exported[<mode>]` when several run modes are timed."""
    return "exported" if len(modes) == 1 else f"exported[{mode}]"


def _box_masks(boxes, size: int):
    """uint8 [M, size, size] bitmaps filling each box."""
    import numpy as np

    masks = np.zeros((len(boxes), size, size), "uint8")
    for i, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        masks[i, y1:y2, x1:x2] = 1
    return masks


def _make_weights(model: str, path: str, detections: bool) -> None:
    """Random weights with PaddleDetection's names: 4 classes score high everywhere, or (not
    `detections`) every class scores far below the threshold."""
    import paddle

    sys.path.insert(0, str(REPO))
    from engine.models.zoo import build_model

    paddle.seed(0)
    state = build_model(model, _arch(model, 100), 80).state_dict()
    if _family(model) == "ppyoloe_seg":
        _ppyoloe_weights(state, detections)
        paddle.save(state, path)
        return
    for name, value in state.items():
        if name.endswith("solo_cate.bias"):  # SOLOv2: the first 4 classes score ~0.73 in every cell (or ~0)
            bias = [1.0 if i < 4 and detections else -4.6 for i in range(value.shape[0])]
            state[name] = paddle.to_tensor(bias, dtype="float32")
        elif "branch2c.norm.weight" in name and _family(model) == "solov2":  # a deep random net overflows
            state[name] = value * 0.2
        elif "rpn_rois_delta" in name:
            # proposals = anchors, spread over the image (random deltas push them all to the borders, where
            # RPN NMS leaves a handful)
            state[name] = paddle.zeros_like(value)
        elif "bbox_score" in name and name.endswith("weight"):
            # scores follow the bias; the weights only break ties the same way on both sides
            state[name] = value * 1e-4
        elif "bbox_score" in name and name.endswith("bias"):
            bias = value.numpy()
            bias[:4] = 6.0 if detections else -20.0  # the first 4 foreground classes score ~0.25 (or ~0)
            state[name] = paddle.to_tensor(bias)
    paddle.save(state, path)


def _ppyoloe_weights(state: Dict, detections: bool) -> None:
    """PP-YOLOE_seg: class biases (4 classes near 0.5, or all ~e-9), per-anchor box distributions, and
    prototypes / coefficients scaled to logits of order 1 (random deep features are tiny)."""
    import numpy as np
    import paddle

    rng = np.random.default_rng(0)
    for name, value in state.items():
        if "pred_cls" in name and name.endswith("bias"):
            bias = np.full(value.shape, -20.0, "float32")
            bias[:4] = 0.0 if detections else -20.0
            state[name] = paddle.to_tensor(bias)
        elif ("pred_cls" in name or "pred_reg" in name) and name.endswith("weight"):
            state[name] = paddle.to_tensor(rng.normal(0, 0.01, value.shape).astype("float32"))
        elif "pred_reg" in name:
            state[name] = paddle.to_tensor(rng.normal(0, 1, value.shape).astype("float32"))
        elif "pred_ins" in name and name.endswith("weight") or name.endswith("proto.conv3.bn.weight"):
            state[name] = value * (300.0 if "pred_ins" in name else 3000.0)


def _spawn(python: str, args, side: str, task: str, keep_top_k: int, run_mode: str = "auto") -> Dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), CUDA_VISIBLE_DEVICES="")
    if args.no_malloc_tuning:
        env["INSTSEG_MALLOC_TUNING"] = "0"
    # engine.runtime.malloc_tuning's settings, as glibc variables
    if args.ppdet_malloc_tuning and side == "ppdet":
        env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(2 ** 31 - 1),
                   MALLOC_TOP_PAD_=str(64 << 20))
    cmd = [python, __file__, "--worker", side, "--task", task, "--model", args.model,
           "--weights", args.weights, "--threads", str(args.threads), "--repeats", str(args.repeats),
           "--keep-top-k", str(keep_top_k),
           "--size", *map(str, args.size), "--batch", str(args.batch), "--train-size", str(args.train_size)]
    if args.ppdet_root:
        cmd += ["--ppdet-root", args.ppdet_root]
    if args.onednn and side == "ours":
        cmd += ["--onednn"]
    cmd += ["--run-mode", run_mode]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{side} {task} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MaskRCNN-ResNet50-FPN", choices=sorted(PPDET_CONFIGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=[800, 1333])
    parser.add_argument("--detections", type=int, nargs="+", default=[16, 100])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=320)
    parser.add_argument("--tasks", nargs="+", default=["infer", "train"])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per measurement")
    parser.add_argument("--ppdet-root", default=None)
    parser.add_argument("--ppdet-python", default=sys.executable)
    parser.add_argument("--onednn", action="store_true", help="oneDNN kernels for ours (dygraph)")
    parser.add_argument("--exported", action="store_true",
                        help="also time ours exported and run by Paddle Inference (infer task)")
    parser.add_argument("--no-malloc-tuning", action="store_true",
                        help="ours and exported without engine.runtime.malloc_tuning "
                             "(INSTSEG_MALLOC_TUNING=0)")
    parser.add_argument("--ppdet-malloc-tuning", action="store_true",
                        help="PaddleDetection with the same glibc malloc settings (environment variables)")
    parser.add_argument("--run-mode", nargs="+", default=["auto"], choices=[*RUN_MODES, HPIP],
                        help="DeployPredictor run modes for --exported (auto: oneDNN on CPU; hpip: what "
                             "use_hpip picks); several are timed side by side")
    parser.add_argument("--worker", choices=["ours", "ppdet", "exported"], help=argparse.SUPPRESS)
    parser.add_argument("--task", default="infer", help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--keep-top-k", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        fn = {"ours": _worker_ours, "ppdet": _worker_ppdet, "exported": _worker_exported}[args.worker]
        print(json.dumps(fn(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("infer", k) for k in args.detections if "infer" in args.tasks]
        runs += [("train", 100)] if "train" in args.tasks else []
        for task, k in runs:
            args.weights = os.path.join(tmp, f"weights_{task}_{k}.pdparams")
            _make_weights(args.model, args.weights, detections=k > 0)
            k = k or DEFAULT_KEEP_TOP_K[_family(args.model)]
            sides = [("ours", sys.executable, "auto")]
            if args.exported and task == "infer":
                sides += [(_exported_label(args.run_mode, m), sys.executable, m) for m in args.run_mode]
            sides += [("ppdet", args.ppdet_python, "auto")] if args.ppdet_root else []
            best: Dict[str, List[float]] = {side: [] for side, _, _ in sides}
            dets, ran = {}, {}
            for _ in range(args.rounds):
                for side, python, mode in sides:
                    res = _spawn(python, args, side.split("[")[0], task, k, mode)
                    best[side].append(min(res["times"]))
                    dets[side], ran[side] = res.get("detections"), res.get("ran")
            setting = (f" {args.size[0]}x{args.size[1]} keep_top_k={k}" if task == "infer"
                       else f" batch {args.batch} at {args.train_size}px")
            line = f"{args.model} {task}" + setting
            for side, _, _ in sides:
                line += f" | {side} {min(best[side]):.2f} s"
                if dets[side] is not None:
                    line += f" (detections {dets[side]})"
                if ran[side]:
                    line += f" ({ran[side]['run_mode']}: {ran[side]['backend']} {ran[side]['precision']})"
            if "ppdet" in best:
                peer = min(best["ppdet"])
                line += "".join(f" | {side}/ppdet {min(best[side]) / peer:.2f}"
                                for side, _, _ in sides if side != "ppdet")
            exported = [side for side, _, _ in sides if side.startswith("exported")]
            line += "".join(f" | {side}/{exported[0]} {min(best[side]) / min(best[exported[0]]):.2f}"
                            for side in exported[1:])
            print(line + f" | threads {args.threads}", flush=True)


if __name__ == "__main__":
    main()
