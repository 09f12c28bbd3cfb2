"""Dataset statistics: instances per class in train and val, and the histogram check_dataset saves."""
import io
import warnings
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import numpy as np

from dataset_tools.validate import SplitData
from dataset_tools.report import utf8_safe
from engine.runtime.atomic_io import write_bytes


def class_counts(splits: Mapping[str, SplitData]) -> Tuple[List[int], List[str], Dict[str, np.ndarray]]:
    """Instances per class over the union of both splits' categories.

    Args:
        splits: split name -> validated split.
    Returns:
        (category ids ascending, their names, split name -> counts aligned with the ids). An annotation
        counts when its category_id is one of its own file's categories.
    """
    names: Dict[int, str] = {}
    for data in splits.values():
        for cid, name in data.categories.items():
            names.setdefault(cid, name)
    ids = sorted(names)
    id_arr = np.array(ids, np.int64)
    counts = {}
    for split, data in splits.items():
        own = np.array(sorted(data.categories), np.int64)
        cats = data.ann_category_ids[np.isin(data.ann_category_ids, own)]
        pos = np.searchsorted(id_arr, cats)
        counts[split] = np.bincount(pos, minlength=len(ids))[: len(ids)]
    return ids, [names[i] for i in ids], counts


def save_histogram(names: List[str], counts: Dict[str, np.ndarray], path: Path) -> None:
    """Bar chart of instances per class, one bar per split side by side, as PNG at `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(names)
    fig = Figure(figsize=(min(60.0, max(8.0, 0.3 * n)), 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(n)
    width = 0.8 / max(1, len(counts))
    for k, (split, values) in enumerate(counts.items()):
        bars = ax.bar(x + (k - (len(counts) - 1) / 2) * width, values, width, label=split)
        if n <= 20:
            ax.bar_label(bars, fontsize=8)
    names = [utf8_safe(name) for name in names]  # a "\ud800" escape in the JSON is no drawable text
    rotation = 90 if n > 8 or max(map(len, names), default=0) > 10 else 0
    ax.set_xticks(x, names, rotation=rotation, parse_math=False)  # a class named "$^$" is text, not a formula
    ax.set_ylabel("Instances")
    ax.set_title("Instances per class")
    ax.legend()
    buf = io.BytesIO()
    with warnings.catch_warnings():  # a script the font lacks is drawn as boxes, not one warning per glyph
        warnings.filterwarnings("ignore", r"Glyph \d+ [\s\S]* missing from font", UserWarning)
        fig.tight_layout()
        fig.savefig(buf, format="png")
    write_bytes(path, buf.getvalue())
