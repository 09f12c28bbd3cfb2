"""Speed of paddle's grid_sample against the compiled point sampler (engine/models/ops/point_sample.py) on
the calls of a Mask-RT-DETR-S training step, batch 2 at 320x320 (mask logits at stride 4: 80x80, 12544
points per mask):

    matcher  the matcher's mask costs: [2, 300, 80, 80] at 12544 points per image (no gradient; once per
             matched prediction set, 8 sets a step)
    loss     the mask losses: 20 matched masks [20, 1, 80, 80] at 12544 points each, with the gradient

Each repeat times a forward and a backward (the loss case; the matcher case has none) of both
implementations, alternately and in alternating order; medians and the ratio grid_sample / ours.

    python tools/benchmark_point_sample.py --threads 2 --repeats 10
"""
import sys
import time
from pathlib import Path
from typing import Callable, Dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from op_timing import (median_forward_backward_ms, op_benchmark_parser, speedup_cells,  # noqa: E402
                       use_cpu_threads)

CASES = {"matcher": (2, 300, False), "loss": (20, 1, True)}  # name: (maps, channels, with gradient)
SIDE, POINTS = 80, 12544


def _step(fn: Callable, x, grid, backward: bool):
    """(forward s, backward s) of one call."""
    import paddle

    x = x.detach()
    x.stop_gradient = not backward
    start = time.perf_counter()
    out = fn(x, grid)
    middle = time.perf_counter()
    if backward:
        paddle.grad([out.sum()], [x])
    return middle - start, time.perf_counter() - middle


def main() -> None:
    parser = op_benchmark_parser(__doc__, "cases", CASES)
    args = parser.parse_args()

    import paddle
    import paddle.nn.functional as F

    from engine.models.ops import point_sample

    use_cpu_threads(args.threads, args.repeats)
    sides: Dict[str, Callable] = {"grid_sample": lambda x, g: F.grid_sample(x, g, align_corners=False),
                                  "ours": point_sample.grid_sample_points}
    for case in args.cases:
        maps, channels, backward = CASES[case]
        paddle.seed(0)
        x = paddle.randn([maps, channels, SIDE, SIDE])
        grid = paddle.rand([maps, 1, POINTS, 2]) * 2.0 - 1.0
        if not point_sample.NATIVE.usable(x, grid):
            sys.exit("the compiled operator is not in use (disabled or build failed)")
        diff = float((sides["grid_sample"](x, grid) - sides["ours"](x, grid)).abs().max())
        medians = median_forward_backward_ms(lambda name: _step(sides[name], x, grid, backward), list(sides),
                                             args.repeats)
        cells = [f"{case}: [{maps}, {channels}, {SIDE}, {SIDE}] at {POINTS} points"]
        cells += speedup_cells(medians, "grid_sample", backward)
        cells.append(f"max |diff| {diff:.1e}")
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
