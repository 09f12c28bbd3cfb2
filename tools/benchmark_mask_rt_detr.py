"""Inference and training-step speed (and peak memory) of InstSeg's Mask-RT-DETR next to PaddleDetection.

Sides run in separate processes, alternately (ours, exported, ppdet, ours, ...), with the same thread count
and the same weights (ours, random, saved under PaddleDetection's names): inference on one preprocessed
image (default 640 x 640, 100 detections on every side: no NMS), and a training step (forward, backward,
AdamW step) on tools/ppdet_detr_parity.loss_batch (2 images at 320 px with 3 and 2 instances, denoising on).
Each line reports the best time of each side over the rounds, the ratio to PaddleDetection and each
side's peak resident memory.

    python tools/benchmark_mask_rt_detr.py --model Mask-RT-DETR-S --threads 2 --exported \
        --ppdet-root /work/peer --ppdet-python /work/peer/.venv/bin/python

`--exported` adds ours exported (engine.deployment.exporter) and run by Paddle Inference (DeployPredictor,
`--run-mode`, default auto = oneDNN on CPU) for inference; `--run-mode auto hpip` times the default and
use_hpip's choice side by side (as tools/benchmark_rcnn.py). Without `--ppdet-root` only ours runs.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from benchmark_rcnn import _exported_label, _time  # noqa: E402  (warm-up, then `repeats` timed calls)
from engine.deployment.high_performance import HPIP, RUN_MODES  # noqa: E402
from ppdet_detr_parity import loss_batch, our_train_inputs, ppdet_model, ppdet_train_inputs  # noqa: E402


def _inputs(size: int):
    import numpy as np

    image = np.random.default_rng(1).uniform(0.0, 1.0, (1, 3, size, size)).astype("float32")
    return {"image": image, "im_shape": np.array([[size, size]], "float32"),
            "scale_factor": np.array([[1.0, 1.0]], "float32")}


def _our_model(args):
    import paddle

    sys.path.insert(0, str(REPO))
    from engine.models.zoo import build_model
    from engine.runtime.malloc_tuning import keep_freed_memory

    keep_freed_memory()
    model = build_model(args.model, None, 80)
    model.set_state_dict(paddle.load(args.weights))
    return model


def _step_fn(model, loss_fn, opt):
    def step():
        total = loss_fn(model)
        total.backward()
        opt.step()
        opt.clear_grad()
    return step


def _worker(args) -> Dict:
    import paddle

    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(args.threads)
    if args.worker == "exported":
        return _worker_exported(args)
    if args.worker == "ppdet":
        model = ppdet_model(args.model, args.ppdet_root)
        model.set_state_dict(paddle.load(args.weights))
        if args.task == "train" or args.size != 640:  # its cached embedding and anchors are for 640 x 640
            model.neck.eval_size = model.transformer.eval_size = None
    else:
        model = _our_model(args)
    if args.task == "infer":
        feeds = {k: paddle.to_tensor(v) for k, v in _inputs(args.size).items()}
        model.eval()

        def run():
            with paddle.no_grad():
                return model(feeds) if args.worker == "ppdet" else model.predict(feeds)
        times = _time(run, args.repeats)
        return {"times": times, "detections": int(run()["bbox_num"].numpy().sum())}
    model.train()
    batch = loss_batch()
    if args.worker == "ppdet":
        inputs = ppdet_train_inputs(batch)
        loss_fn = (lambda m: m(inputs)["loss"])
    else:
        inputs = our_train_inputs(batch)
        loss_fn = (lambda m: paddle.add_n(list(m.loss(inputs).values())))
    opt = paddle.optimizer.AdamW(1e-5, parameters=model.parameters())
    return {"times": _time(_step_fn(model, loss_fn, opt), args.repeats)}


def _worker_exported(args) -> Dict:
    from omegaconf import OmegaConf

    sys.path.insert(0, str(REPO))
    from engine.config.schema import InstSegConfig
    from engine.deployment.exporter import export_model
    from engine.deployment.high_performance import predictor_options
    from engine.deployment.inference import DeployPredictor

    model = _our_model(args)
    model.eval()
    cfg = OmegaConf.structured(InstSegConfig)
    cfg.Global.model, cfg.Train.num_classes = args.model, 80
    with tempfile.TemporaryDirectory() as tmp:
        cfg.Global.dataset_dir = cfg.Global.output = tmp  # no annotations: generic label names
        export_model(model, cfg, os.path.join(tmp, "inference"))
        deploy = DeployPredictor(os.path.join(tmp, "inference"), device="cpu", cpu_threads=args.threads,
                                 **predictor_options(args.run_mode[0]))
        feeds = _inputs(args.size)
        outputs = deploy.predictor.get_output_names()

        def run():  # the same preprocessed input as the other sides; outputs copied back as predict does
            deploy._run(deploy.predictor, deploy.run_mode, feeds)
            return {name: deploy.predictor.get_output_handle(h).copy_to_cpu()
                    for name, h in zip(deploy.output_names, outputs)}
        times = _time(run, args.repeats)
        ran = deploy.run_info()
        return {"times": times, "detections": int(run()["bbox_num"].sum()),
                "fallback": deploy._fallback is not None, "ran": f"{ran['run_mode']} {ran['precision']}"}


def _spawn(python: str, args, side: str, task: str, run_mode: str = "auto") -> Dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), CUDA_VISIBLE_DEVICES="")
    cmd = [python, __file__, "--worker", side, "--task", task, "--model", args.model,
           "--weights", args.weights, "--threads", str(args.threads), "--repeats", str(args.repeats),
           "--size", str(args.size), "--run-mode", run_mode]
    if args.ppdet_root:
        cmd += ["--ppdet-root", args.ppdet_root]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{side} {task} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _make_weights(model: str, path: str) -> None:
    import paddle

    sys.path.insert(0, str(REPO))
    from engine.models.zoo import build_model

    paddle.seed(0)
    paddle.save(build_model(model, None, 80).state_dict(), path)


def _measure(args, task: str) -> str:
    sides = [("ours", sys.executable, "auto")]
    if args.exported and task == "infer":
        sides += [(_exported_label(args.run_mode, m), sys.executable, m) for m in args.run_mode]
    sides += [("ppdet", args.ppdet_python, "auto")] if args.ppdet_root else []
    best: Dict[str, List[float]] = {side: [] for side, _, _ in sides}
    info: Dict[str, Dict] = {}
    for _ in range(args.rounds):
        for side, python, mode in sides:
            res = _spawn(python, args, side.split("[")[0], task, mode)
            best[side].append(min(res["times"]))
            info[side] = res
    what = f"infer {args.size}x{args.size}" if task == "infer" else "train step batch 2 at 320px"
    line = f"{args.model} {what}"
    for side, _, _ in sides:
        extra = [f"{k} {info[side][k]}" for k in ("ran", "detections", "fallback") if k in info[side]]
        extra.append(f"peak {info[side]['peak_mb']:.0f} MB")
        line += f" | {side} {min(best[side]):.2f} s ({', '.join(extra)})"
    if "ppdet" in best:
        peer = min(best["ppdet"])
        ratios = [f" | {side}/ppdet {min(best[side]) / peer:.2f}" for side, _, _ in sides if side != "ppdet"]
        line += "".join(ratios)
    exported = [side for side, _, _ in sides if side.startswith("exported")]
    line += "".join(f" | {side}/{exported[0]} {min(best[side]) / min(best[exported[0]]):.2f}"
                    for side in exported[1:])
    return line + f" | threads {args.threads}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Mask-RT-DETR-S", choices=[f"Mask-RT-DETR-{s}" for s in "SMLXH"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per measurement")
    parser.add_argument("--size", type=int, default=640, help="inference input size (square, multiple of 32)")
    parser.add_argument("--tasks", nargs="+", default=["infer", "train"], choices=["infer", "train"])
    parser.add_argument("--exported", action="store_true", help="also time ours on Paddle Inference (infer)")
    parser.add_argument("--run-mode", nargs="+", default=["auto"], choices=[*RUN_MODES, HPIP],
                        help="DeployPredictor run modes for --exported (hpip: what use_hpip picks); several "
                             "are timed side by side")
    parser.add_argument("--ppdet-root", default=None)
    parser.add_argument("--ppdet-python", default=sys.executable)
    parser.add_argument("--worker", choices=["ours", "ppdet", "exported"], help=argparse.SUPPRESS)
    parser.add_argument("--task", default="infer", help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = _worker(args)
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        args.weights = os.path.join(tmp, "weights.pdparams")
        _make_weights(args.model, args.weights)
        for task in args.tasks:
            print(_measure(args, task), flush=True)


if __name__ == "__main__":
    main()
