"""Forward and backward timing of several implementations of one operator, alternately, with the command
line and result cells shared by the operator benchmarks (tools/benchmark_roi_align.py,
benchmark_ms_deform_attn.py, benchmark_point_sample.py)."""
import argparse
import os
import statistics
from typing import Callable, Dict, List, Sequence, Tuple


def op_benchmark_parser(doc: str, option: str, cases: Sequence[str]) -> argparse.ArgumentParser:
    """`--threads`, `--repeats` and `--<option>` (which of `cases` to time, default all)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(f"--{option}", nargs="+", default=list(cases), choices=list(cases))
    return parser


def use_cpu_threads(threads: int, repeats: int, extra: str = "") -> None:
    """Run Paddle on the CPU with `threads` math threads and print the settings the timings depend on."""
    import paddle

    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(threads)
    print(f"threads={threads} repeats={repeats}{extra} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} cpus={os.cpu_count()}")


def median_forward_backward_ms(step: Callable[[str], Tuple[float, float]], names: Sequence[str],
                               repeats: int) -> Dict[str, Tuple[float, float]]:
    """Per side, the median (forward ms, backward ms) over `repeats` runs of `step(name)`, which runs one
    forward and backward of that side and returns their seconds. The sides alternate, in alternating
    order from one repeat to the next, so machine noise hits all of them."""
    times: Dict[str, List[Tuple[float, float]]] = {name: [] for name in names}
    for rep in range(repeats):
        for name in (list(names) if rep % 2 == 0 else list(names)[::-1]):
            times[name].append(step(name))
    return {name: (statistics.median(t[0] for t in runs) * 1e3, statistics.median(t[1] for t in runs) * 1e3)
            for name, runs in times.items()}


def speedup_cells(medians: Dict[str, Tuple[float, float]], reference: str,
                  backward: bool = True) -> List[str]:
    """"fwd <reference> .. ms ours .. ms x<speed-up>" (and the same for bwd) from
    `median_forward_backward_ms`'s result, whose sides are `reference` and "ours"."""
    phases = (("fwd", 0), ("bwd", 1)) if backward else (("fwd", 0),)
    return [f"{what} {reference} {medians[reference][i]:7.1f} ms ours {medians['ours'][i]:6.1f} ms "
            f"x{medians[reference][i] / medians['ours'][i]:.1f}" for what, i in phases]
