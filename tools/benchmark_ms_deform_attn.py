"""Speed of the grid_sample formulation of multi-scale deformable attention against the compiled operator
(engine/models/ops/ms_deform_attn.py, ms_deform_attn_cpu.cc): one decoder layer's sampling.

Shapes (8 heads of 32 channels, 4 points per head and level, 3 levels at strides 8 / 16 / 32):

    train  Mask-RT-DETR-S training step, batch 2 at 320x320: maps 40x40, 20x20, 10x10,
           400 queries (300 + 100 denoising)
    infer  inference at 640x640, batch 1: maps 80x80, 40x40, 20x20, 300 queries

Locations are spread around each query's reference point as the decoder's are (some fall off the map);
weights are a softmax. Each repeat times a forward and a backward (gradients w.r.t. values, locations and
weights for a random upstream gradient) of both implementations, alternately and in alternating order,
so machine noise hits both; medians are printed with the ratio grid_sample / ours (> 1: ours is faster).
A decoder runs this once per layer (6 layers for S).

    python tools/benchmark_ms_deform_attn.py --threads 2 --repeats 10
"""
import sys
import time
from pathlib import Path
from typing import Callable, Dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from op_timing import (median_forward_backward_ms, op_benchmark_parser, speedup_cells,  # noqa: E402
                       use_cpu_threads)

CASES = {  # name: (batch, queries, map sides (H = W) per level)
    "train": (2, 400, (40, 20, 10)),
    "infer": (1, 300, (80, 40, 20)),
}
HEADS, HEAD_DIM, POINTS = 8, 32, 4


def _inputs(case: str, seed: int = 0):
    """Values per level [B, H*W, M*D], level sizes, locations [B, Q, M, L, P, 2], weights, upstream."""
    import numpy as np
    import paddle

    batch, queries, sides = CASES[case]
    levels = len(sides)
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal((batch, s * s, HEADS * HEAD_DIM)).astype("float32") for s in sides]
    centre = rng.uniform(0.05, 0.95, (batch, queries, 1, 1, 1, 2))
    size = rng.uniform(0.05, 0.6, (batch, queries, 1, 1, 1, 2))
    offsets = rng.standard_normal((batch, queries, HEADS, levels, POINTS, 2))
    locations = (centre + offsets / POINTS * size * 0.5).astype("float32")
    logits = rng.standard_normal((batch, queries, HEADS, levels * POINTS))
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    upstream = rng.standard_normal((batch, queries, HEADS * HEAD_DIM)).astype("float32")
    weights = weights.reshape(locations.shape[:-1]).astype("float32")
    return ([paddle.to_tensor(v) for v in values], [paddle.to_tensor([s, s], "int32") for s in sides],
            paddle.to_tensor(locations), paddle.to_tensor(weights), paddle.to_tensor(upstream))


def _step(fn: Callable, values, sizes, locations, weights, upstream):
    """One forward and backward: (forward s, backward s, [output, gradients...])."""
    import paddle

    inputs = [t.detach() for t in (*values, locations, weights)]
    for t in inputs:
        t.stop_gradient = False
    start = time.perf_counter()
    out = fn(inputs[:len(values)], sizes, inputs[-2], inputs[-1])
    middle = time.perf_counter()
    grads = paddle.grad([out], inputs, [upstream])
    return middle - start, time.perf_counter() - middle, [out, *grads]


def main() -> None:
    parser = op_benchmark_parser(__doc__, "cases", CASES)
    args = parser.parse_args()

    import numpy as np

    from engine.models.ops import ms_deform_attn

    use_cpu_threads(args.threads, args.repeats)
    sides: Dict[str, Callable] = {"grid_sample": ms_deform_attn.grid_sample_formulation,
                                  "ours": ms_deform_attn.deformable_sample}
    for case in args.cases:
        values, sizes, locations, weights, upstream = _inputs(case)
        if not ms_deform_attn.NATIVE.usable(locations, weights, *values):
            sys.exit("the compiled operator is not in use (disabled or build failed)")
        first = {name: _step(fn, values, sizes, locations, weights, upstream)[2]
                 for name, fn in sides.items()}
        diff = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(*first.values()))
        del first
        medians = median_forward_backward_ms(
            lambda name: _step(sides[name], values, sizes, locations, weights, upstream)[:2],
            list(sides), args.repeats)
        batch, queries, maps = CASES[case]
        cells = [f"{case}: batch {batch}, {queries} queries, maps {'/'.join(f'{s}x{s}' for s in maps)}"]
        cells += speedup_cells(medians, "grid_sample")
        cells.append(f"max |diff| {diff:.1e}")
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
