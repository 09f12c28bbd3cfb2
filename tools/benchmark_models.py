"""Inference and training-step speed (and peak memory) of an InstSeg model next to PaddleDetection
develop: the R-CNN family, SOLOv2, PP-YOLOE_seg-S and Mask-RT-DETR-S..H (`--model`).

Both sides load the same weights (ours, saved with PaddleDetection's names), run on the same
image with the same thread count, and are timed alternately in separate processes (ours, peer,
ours, peer, ...) so machine noise hits both. Each line reports the best time of each side over the
rounds, the ratio to PaddleDetection and each side's peak resident memory. The classifier scores follow
a bias raised for 4 classes, so every candidate scores above the threshold for each of them (R-CNN: the
RPN's box deltas are zero, so the proposals are anchors spread over the image; PP-YOLOE: the box
distributions differ per anchor): the detection count reaches `keep_top_k` (reported). `--detections 0`
lowers every class bias instead: no detection at all (keep_top_k stays the model's default).
SOLOv2 (`--model SOLOv2`): 4 class biases raised so that every grid cell is a candidate; `--detections` is
Matrix NMS's post_nms_top_n. Mask-RT-DETR (`--model Mask-RT-DETR-S` ..): random weights, `--detections` is
num_top_queries (no threshold: every image gets them all); its training step is an AdamW step with
denoising on, on a fixed batch of 2 images at 320 px (`--batch` / `--train-size` do not apply).
What each side is fed: tools/benchmark_inputs.py.

    python tools/benchmark_models.py --threads 2 --detections 16 100 [--exported] \
        --ppdet-root /path/to/PaddleDetection --ppdet-python /path/to/venv/bin/python
    python tools/benchmark_models.py --model PP-YOLOE_seg-S --size 640 640 --detections 0 300 ...
    python tools/benchmark_models.py --model Mask-RT-DETR-S --threads 2 --exported ...

`--size` and `--detections` default per family: 800 x 1333 with 16 and 100 detections, but Mask-RT-DETR
640 x 640 (its eval size) with 100.

`--exported` adds a third side for inference: ours exported (engine.deployment.exporter) and run by Paddle
Inference (engine.deployment.inference.DeployPredictor, `--run-mode`), fed the same preprocessed input.
`--run-mode` takes run modes (auto, paddle, mkldnn, mkldnn_bf16, ...) and `hpip` (what use_hpip picks on
this machine); several make one exported side each, timed alternately with the others, each reporting the
run mode and precision that ran, and their time ratios to the first:

    python tools/benchmark_models.py --threads 2 --detections 16 --tasks infer --exported --run-mode auto hpip

`--graphs` picks the exported graph each exported side runs (engine.deployment.graphs): `auto` (what a
deployment picks: the graph with compiled CPU operators when they load, else the portable one), `compiled`
(the same, failing when the compiled graph did not run) or `portable` (Paddle's own ops only,
INSTSEG_NATIVE_OPS=0); several make one exported side per run mode and graph, timed alternately:

    python tools/benchmark_models.py --model Mask-RT-DETR-S --exported --tasks infer \
        --graphs compiled portable

`--ppdet-root` is a checkout of PaddleDetection develop (not committed here); without it only ours
runs. PaddleDetection's side needs numpy<2 in its own environment, hence `--ppdet-python`.

Ours runs as the CLI does on CPU, with engine.runtime.malloc_tuning (`--no-malloc-tuning`: without);
`--ppdet-malloc-tuning` gives PaddleDetection the same glibc settings, for a like-for-like comparison.
Likewise engine.runtime.blas_dispatch (MKL's AVX2 kernels on AMD CPUs): ours has it unless
`--no-blas-tuning`, PaddleDetection only with `--ppdet-blas-tuning` (as shipped, it runs MKL's own dispatch).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inputs import (REPO, DETR_TRAIN, arch, exported_feeds, export_with_weights,  # noqa: E402
                              family, image, make_weights, optimizer, ours_train_inputs,
                              ppdet_train_inputs)

sys.path.insert(0, str(REPO))
from engine.deployment.high_performance import HPIP, RUN_MODES  # noqa: E402  (no Paddle import)
from engine.runtime.blas_dispatch import MKL_CPU_TYPE, OPT_OUT as BLAS_OPT_OUT  # noqa: E402

PPDET_CONFIGS = {
    "MaskRCNN-ResNet50-FPN": "configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.yml",
    "MaskRCNN-ResNet50": "configs/mask_rcnn/mask_rcnn_r50_1x_coco.yml",
    "Cascade-MaskRCNN-ResNet50-FPN": "configs/cascade_rcnn/cascade_mask_rcnn_r50_fpn_1x_coco.yml",
    "PP-YOLOE_seg-S": "configs/ppyoloe_seg/ppyoloe_seg_s_80e_coco.yml",
    "SOLOv2": "configs/solov2/solov2_r50_fpn_1x_coco.yml",
    **{f"Mask-RT-DETR-{s}": f"configs/mask_rtdetr/mask_rtdetr_hgnetv2_{s.lower()}_6x_coco.yml"
       for s in "SMLXH"},
}
# ppdet's detections per image (used with --detections 0), default --detections and --size per family
DEFAULT_KEEP_TOP_K = {"rcnn": 100, "ppyoloe_seg": 300, "solov2": 100, "mask_rt_detr": 100}
DEFAULT_DETECTIONS = {"rcnn": [16, 100], "solov2": [16, 100], "ppyoloe_seg": [16, 100], "mask_rt_detr": [100]}
DEFAULT_SIZE = {"rcnn": [800, 1333], "solov2": [800, 1333], "ppyoloe_seg": [800, 1333],
                "mask_rt_detr": [640, 640]}


def _set_ppdet_keep_top_k(cfg, model: str, keep_top_k: int) -> None:
    """Set the detections per image in PaddleDetection's config for `model`."""
    fam = family(model)
    if fam == "solov2":
        cfg["MaskMatrixNMS"]["post_nms_top_n"] = keep_top_k
    elif fam == "mask_rt_detr":
        cfg["DETRPostProcess"]["num_top_queries"] = keep_top_k
    else:
        nms = cfg["PPYOLOEInsHead"]["nms"] if fam == "ppyoloe_seg" else cfg["BBoxPostProcess"]["nms"]
        nms["keep_top_k"] = keep_top_k


def _time(fn, repeats: int) -> List[float]:
    fn()  # warm-up: first call builds kernels and caches
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _train_step_times(args, model, total_loss) -> List[float]:
    """Times of a training step: `total_loss()` (a scalar tensor), backward, optimizer step."""
    model.train()
    opt = optimizer(args.model, model.parameters())

    def step():
        total_loss().backward()
        opt.step()
        opt.clear_grad()

    return _time(step, args.repeats)


def _worker_ppdet(args) -> Dict:
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
        # PP-YOLOE's anchors, Mask-RT-DETR's position embedding and anchors are precomputed for 640 x 640
        cfg["eval_size"] = None
    create = workspace.create
    model = create(cfg.architecture)
    model.set_state_dict(paddle.load(args.weights))
    result: Dict = {"side": "ppdet"}
    if args.task == "infer":
        h, w = args.size
        inputs = {"image": paddle.to_tensor(image(h, w)),
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
        inputs = ppdet_train_inputs(args.model, args.batch, args.train_size)
        result["times"] = _train_step_times(args, model, lambda: model(inputs)["loss"])
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
    model = build_model(args.model, arch(args.model, args.keep_top_k), 80)
    model.set_state_dict(paddle.load(args.weights))
    result: Dict = {"side": "ours"}
    if args.task == "infer":
        h, w = args.size
        pixels = paddle.to_tensor(image(h, w))
        im_shape = paddle.to_tensor([[float(h), float(w)]])
        scale = paddle.to_tensor([[1.0, 1.0]])
        model.eval()
        holder = {}

        def run():
            with paddle.no_grad():
                holder["out"] = model(pixels, im_shape, scale)

        result["times"] = _time(run, args.repeats)
        result["detections"] = int(holder["out"]["bbox_num"].numpy().sum())
    else:
        batch = ours_train_inputs(args.model, args.batch, args.train_size)
        total = (lambda: paddle.add_n(list(model.loss(batch).values())))
        result["times"] = _train_step_times(args, model, total)
    return result


def _worker_exported(args) -> Dict:
    """Ours, exported with engine.deployment.exporter and run by Paddle Inference
    (engine.deployment.inference.DeployPredictor)."""
    sys.path.insert(0, str(REPO))
    from engine.deployment.high_performance import predictor_options
    from engine.deployment.inference import DeployPredictor

    with tempfile.TemporaryDirectory() as tmp:
        export_with_weights(args.model, args.weights, args.keep_top_k, os.path.join(tmp, "inference"))
        deploy = DeployPredictor(os.path.join(tmp, "inference"), device="cpu", cpu_threads=args.threads,
                                 **predictor_options(args.run_mode[0]))
        feeds = exported_feeds(*args.size)

        def run():  # the same preprocessed input as the other sides
            return run_exported(deploy, feeds)

        ran = deploy.run_info()
        if args.graphs[0] == "compiled" and ran["graph"] != "compiled":
            raise SystemExit("--graphs compiled: the compiled graph did not run (see the log above)")
        result: Dict = {"side": "exported", "times": _time(run, args.repeats)}
        result["ran"] = f"{ran['run_mode']}: {ran['backend']} {ran['precision']}, {ran['graph']} graph"
        result["detections"] = int(run()["bbox_num"].sum())
        result["fallback"] = deploy._fallback is not None  # a batch oneDNN could not run
    return result


def run_exported(deploy, feeds: Dict) -> Dict:
    """One Paddle Inference run of a DeployPredictor on preprocessed `feeds`, its outputs copied back by
    name as predict does."""
    deploy._run(deploy.predictor, deploy.run_mode, feeds)
    handles = deploy.predictor.get_output_names()
    return {name: deploy.predictor.get_output_handle(h).copy_to_cpu()
            for name, h in zip(deploy.output_names, handles)}


def _exported_sides(args) -> List[Tuple[str, str, str]]:
    """(name, run mode, graph) of each exported side: `exported`, or `exported[<mode>]` /
    `exported[<graph>]` / `exported[<mode>,<graph>]` for what varies."""
    sides = []
    for mode in args.run_mode:
        for graph in args.graphs:
            tags = ([mode] if len(args.run_mode) > 1 else []) + ([graph] if len(args.graphs) > 1 else [])
            sides.append((f"exported[{','.join(tags)}]" if tags else "exported", mode, graph))
    return sides


def _spawn(python: str, args, side: str, task: str, keep_top_k: int, run_mode: str = "auto",
           graph: str = "auto") -> Dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), CUDA_VISIBLE_DEVICES="")
    if graph == "portable":
        env["INSTSEG_NATIVE_OPS"] = "0"
    if args.no_malloc_tuning:
        env["INSTSEG_MALLOC_TUNING"] = "0"
    # Importing `engine` (this file does, in every worker too) sets MKL_DEBUG_CPU_TYPE on AMD CPUs unless
    # INSTSEG_BLAS_TUNING=0: each side decides afresh. PaddleDetection runs as shipped unless asked.
    env.pop(MKL_CPU_TYPE, None)
    if args.no_blas_tuning or (side == "ppdet" and not args.ppdet_blas_tuning):
        env[BLAS_OPT_OUT] = "0"
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
    cmd += ["--run-mode", run_mode, "--graphs", graph]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{side} {task} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure(args, task: str, k: int) -> str:
    """One line: the best time of each side over the alternating rounds, detections, peak memory."""
    sides = [("ours", sys.executable, "auto", "auto")]
    if args.exported and task == "infer":
        sides += [(name, sys.executable, mode, graph) for name, mode, graph in _exported_sides(args)]
    sides += [("ppdet", args.ppdet_python, "auto", "auto")] if args.ppdet_root else []
    best: Dict[str, List[float]] = {side: [] for side, _, _, _ in sides}
    info: Dict[str, Dict] = {}
    for _ in range(args.rounds):
        for side, python, mode, graph in sides:
            res = _spawn(python, args, side.split("[")[0], task, k, mode, graph)
            best[side].append(min(res["times"]))
            info[side] = res
    if task == "infer":
        setting = f" {args.size[0]}x{args.size[1]} keep_top_k={k}"
    else:
        setting = f" batch {args.batch} at {args.train_size}px"
        setting += " (denoising on)" if family(args.model) == "mask_rt_detr" else ""
    line = f"{args.model} {task}" + setting
    for side, _, _, _ in sides:
        extra = [f"{key} {info[side][key]}" for key in ("ran", "detections", "fallback") if key in info[side]]
        extra.append(f"peak {info[side]['peak_mb']:.0f} MB")
        line += f" | {side} {min(best[side]):.2f} s ({', '.join(extra)})"
    if "ppdet" in best:
        peer = min(best["ppdet"])
        line += "".join(f" | {side}/ppdet {min(best[side]) / peer:.2f}"
                        for side, _, _, _ in sides if side != "ppdet")
    exported = [side for side, _, _, _ in sides if side.startswith("exported")]
    line += "".join(f" | {side}/{exported[0]} {min(best[side]) / min(best[exported[0]]):.2f}"
                    for side in exported[1:])
    return line + f" | threads {args.threads}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MaskRCNN-ResNet50-FPN", choices=sorted(PPDET_CONFIGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=None, help="inference (h, w); default: family's")
    parser.add_argument("--detections", type=int, nargs="+", default=None,
                        help="keep_top_k values to time inference at; default: family's")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=320)
    parser.add_argument("--tasks", nargs="+", default=["infer", "train"], choices=["infer", "train"])
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
    parser.add_argument("--no-blas-tuning", action="store_true",
                        help="ours and exported without engine.runtime.blas_dispatch (INSTSEG_BLAS_TUNING=0)")
    parser.add_argument("--ppdet-blas-tuning", action="store_true",
                        help="PaddleDetection with the same MKL setting (MKL_DEBUG_CPU_TYPE, on AMD CPUs)")
    parser.add_argument("--run-mode", nargs="+", default=["auto"], choices=[*RUN_MODES, HPIP],
                        help="DeployPredictor run modes for --exported (auto: oneDNN on CPU; hpip: what "
                             "use_hpip picks); several are timed side by side")
    parser.add_argument("--graphs", nargs="+", default=["auto"], choices=["auto", "compiled", "portable"],
                        help="exported graph(s) for --exported: auto (compiled CPU operators when they "
                             "load), "
                             "compiled (fail if it did not run), portable (Paddle's own ops); several are "
                             "timed side by side")
    parser.add_argument("--worker", choices=["ours", "ppdet", "exported"], help=argparse.SUPPRESS)
    parser.add_argument("--task", default="infer", help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--keep-top-k", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = {"ours": _worker_ours, "ppdet": _worker_ppdet, "exported": _worker_exported}[args.worker]
        result = worker(args)
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    fam = family(args.model)
    args.size = args.size or DEFAULT_SIZE[fam]
    args.detections = args.detections or DEFAULT_DETECTIONS[fam]
    if fam == "mask_rt_detr":
        args.batch, args.train_size = DETR_TRAIN  # its training batch is fixed (benchmark_inputs)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("infer", k) for k in args.detections if "infer" in args.tasks]
        runs += [("train", 100)] if "train" in args.tasks else []
        for task, k in runs:
            args.weights = os.path.join(tmp, f"weights_{task}_{k}.pdparams")
            make_weights(args.model, args.weights, detections=k > 0)
            print(_measure(args, task, k or DEFAULT_KEEP_TOP_K[fam]), flush=True)


if __name__ == "__main__":
    main()
