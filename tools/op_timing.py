"""Forward and backward timing of several implementations of one operator, alternately (used by
tools/benchmark_roi_align.py and tools/benchmark_ms_deform_attn.py)."""
import statistics
from typing import Callable, Dict, List, Sequence, Tuple


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
