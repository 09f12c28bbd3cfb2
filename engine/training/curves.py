"""A PNG of the training curves (matplotlib Agg): losses per logged step (left), val AP per evaluation
(right)."""
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from engine.runtime.atomic_io import atomic_path

Series = Tuple[List[float], List[float]]

AP_KEYS: Sequence[str] = ("AP", "bbox_AP")  # mask AP (PaddleX's "AP") and, when reported, box AP


def _series(records: List[Dict[str, Any]], kind: str, x: str, key: str) -> Series:
    points = [(r[x], r[key]) for r in records if r.get("type") == kind and r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(records: List[Dict[str, Any]], path: Path) -> Dict[str, Series]:
    """Draw loss and AP curves from metrics records (see engine.training.metrics_log) into `path`.

    Returns the plotted series, `{"loss": (steps, values), "loss_cls": ..., "AP": (epochs, values), ...}`:
    one loss point per logged step, one AP point per evaluation.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
    from matplotlib.ticker import MaxNLocator

    train = [r for r in records if r.get("type") == "train"]
    loss_keys = sorted({k for r in train for k in r if k.startswith("loss") and k != "loss"})
    fig = Figure(figsize=(12, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_ap = fig.subplots(1, 2)
    plotted: Dict[str, Series] = {}
    steps, total = plotted["loss"] = _series(records, "train", "step", "loss")
    ax_loss.plot(steps, total, label="loss", linewidth=2, color="black",
                 marker="." if len(steps) < 50 else None)
    for key in loss_keys:
        xs, ys = plotted[key] = _series(records, "train", "step", key)
        ax_loss.plot(xs, ys, label=key, linewidth=1)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Training loss")
    ax_loss.grid(alpha=0.3)
    if steps:
        ax_loss.legend(fontsize=8)
    for key in AP_KEYS:
        xs, ys = _series(records, "eval", "epoch", key)
        if xs:
            plotted[key] = (xs, ys)
            ax_ap.plot(xs, ys, marker="o", label="mask AP" if key == "AP" else key)
    ax_ap.set_xlabel("epoch")
    ax_ap.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_ap.set_ylabel("AP")
    ax_ap.set_title("Validation AP")
    ax_ap.grid(alpha=0.3)
    if ax_ap.lines:
        ax_ap.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return plotted
