"""Speed of Paddle's CPU roi_align against the compiled operator (engine/models/ops/roi_align_fast.py).

The shapes are those of a Mask R-CNN R50-FPN training step, batch 2 at 320x320, box head (7x7): per FPN
level the feature map, the number of RoIs pooled from it and their sizes (sqrt of area, input pixels):

    P2  [2, 256, 80, 80]  700 RoIs   8..112 px  scale 1/4
    P3  [2, 256, 40, 40]  200 RoIs 112..224 px  scale 1/8
    P4  [2, 256, 20, 20]   80 RoIs 224..320 px  scale 1/16

Each repeat times a forward and a backward (gradient w.r.t. the features for a random upstream
gradient) of both implementations, alternately and in alternating order, so machine noise hits both;
medians are printed with the ratio Paddle / ours (> 1: ours is faster).

    python tools/benchmark_roi_align.py --threads 2 --repeats 10
"""
import sys
import time
from pathlib import Path
from typing import Callable, Dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from op_timing import (median_forward_backward_ms, op_benchmark_parser, speedup_cells,  # noqa: E402
                       use_cpu_threads)

LEVELS = {  # name: (feature side, RoI count, smallest and largest RoI side in px, spatial scale)
    "P2": (80, 700, 8, 112, 0.25),
    "P3": (40, 200, 112, 224, 0.125),
    "P4": (20, 80, 224, 320, 0.0625),
}
IMAGE = 320


def _inputs(level: str, output_size: int, seed: int = 0):
    import numpy as np
    import paddle

    side, count, smallest, largest, scale = LEVELS[level]
    rng = np.random.default_rng(seed)
    feat = rng.standard_normal((2, 256, side, side)).astype("float32")
    size = rng.uniform(smallest, largest, count)
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0), count))
    w, h = size * np.sqrt(aspect), size / np.sqrt(aspect)
    cx, cy = rng.uniform(0, IMAGE, count), rng.uniform(0, IMAGE, count)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).clip(0, IMAGE).astype("float32")
    first = count // 2
    upstream = rng.standard_normal((count, 256, output_size, output_size)).astype("float32")
    return (paddle.to_tensor(feat), paddle.to_tensor(boxes),
            paddle.to_tensor(np.array([first, count - first], "int32")), paddle.to_tensor(upstream), scale)


def _step(fn: Callable, feat, boxes, num, upstream, output_size: int, scale: float):
    """One forward and backward: (forward s, backward s, output, gradient w.r.t. the features)."""
    import paddle

    x = feat.detach()
    x.stop_gradient = False
    start = time.perf_counter()
    out = fn(x, boxes, num, output_size, spatial_scale=scale, sampling_ratio=0, aligned=False)
    middle = time.perf_counter()
    (grad,) = paddle.grad([out], [x], [upstream])
    return middle - start, time.perf_counter() - middle, out, grad


def main() -> None:
    parser = op_benchmark_parser(__doc__, "levels", LEVELS)
    parser.add_argument("--output-size", type=int, default=7)
    args = parser.parse_args()

    import numpy as np
    import paddle.vision.ops as vops

    from engine.models.ops import roi_align_fast

    use_cpu_threads(args.threads, args.repeats, f" output={args.output_size}")
    sides: Dict[str, Callable] = {"paddle": vops.roi_align, "ours": roi_align_fast.roi_align}
    for level in args.levels:
        feat, boxes, num, upstream, scale = _inputs(level, args.output_size)
        if not roi_align_fast.uses_native(feat, boxes, num):
            sys.exit("the compiled operator is not in use (disabled or build failed)")
        # warm-up, and the same results
        first = {name: _step(fn, feat, boxes, num, upstream, args.output_size, scale)
                 for name, fn in sides.items()}
        out_diff = float(np.abs(first["paddle"][2].numpy() - first["ours"][2].numpy()).max())
        grad_diff = float(np.abs(first["paddle"][3].numpy() - first["ours"][3].numpy()).max())
        del first
        medians = median_forward_backward_ms(
            lambda name: _step(sides[name], feat, boxes, num, upstream, args.output_size, scale)[:2],
            list(sides), args.repeats)
        _, count, smallest, largest, _ = LEVELS[level]
        cells = [f"{level} {list(feat.shape)} {count} RoIs {smallest}..{largest}px"]
        cells += speedup_cells(medians, "paddle")
        cells.append(f"max |diff| out {out_diff:.1e} grad {grad_diff:.1e}")
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
