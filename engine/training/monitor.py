"""What a training run reports while it runs: train.log, log lines, metrics.jsonl, VisualDL, tqdm, curves.

Only rank 0 reports (`enabled=False` elsewhere). A log line and a metrics record are written every
`log_interval` optimizer steps and at the last step of each epoch, with the losses averaged over the steps
since the previous one; on a TTY a tqdm bar with ETA runs as well, otherwise the log lines are the
progress report.
"""
import logging
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List

import numpy as np

from engine.training.curves import plot_curves
from engine.training.metrics_log import MetricsLog

logger = logging.getLogger("instseg")

CURVES = "train_curves.png"
METRICS = "metrics.jsonl"
VISUALDL = "vdl"


def attach_log_file(path: Path, append: bool) -> Callable[[], None]:
    """Copy the `instseg` log into `path` (a resumed run appends to the log it continues); returns detach."""
    handler = logging.FileHandler(path, mode="a" if append else "w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)

    def detach() -> None:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old_level)

    return detach


def format_seconds(seconds: float) -> str:
    """H:MM:SS."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class TrainMonitor:
    """Reports one training run; see the module docstring."""

    def __init__(self, out: Path, epochs: int, steps_per_epoch: int, log_interval: int,
                 enabled: bool) -> None:
        self.out = Path(out)
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = epochs * steps_per_epoch
        self.log_interval = max(int(log_interval), 1)
        self.enabled = enabled
        self.metrics = MetricsLog(self.out / METRICS, enabled=enabled)
        self.vdl: Any = None
        self.bar: Any = None
        self._window: Dict[str, List[float]] = {}
        self._window_start = time.time()

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self, done_steps: int, resumed: bool) -> None:
        """Open the outputs; a resumed run keeps the metrics records up to its checkpoint's step."""
        self.metrics.start(done_steps if resumed else -1)
        if not self.enabled:
            return
        self.vdl = _visualdl_writer(self.out / VISUALDL)
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total_steps, initial=done_steps, desc="train", dynamic_ncols=True)

    def redirect(self) -> ContextManager[Any]:
        """Keep log lines from breaking the tqdm bar."""
        if self.bar is None:
            return nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm(loggers=[logger])

    def new_epoch(self) -> None:
        """Start a fresh averaging window (windows never straddle epochs)."""
        self._window, self._window_start = {}, time.time()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.vdl is not None:
            self.vdl.close()

    @property
    def visualdl_log(self) -> str:
        """train_result.json's `visualdl_log`: the VisualDL directory, or "" when visualdl is absent."""
        return VISUALDL if self.vdl is not None else ""

    # ------------------------------------------------------------------------------------------ reports
    def step(self, epoch: int, it: int, step: int, losses: Dict[str, float], lr: float) -> None:
        """After optimizer step `step` (1-based), iteration `it` of epoch `epoch` (both 1-based)."""
        if not self.enabled:
            return
        for k, v in losses.items():
            self._window.setdefault(k, []).append(v)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{losses['loss']:.4f}", lr=f"{lr:.2e}")
        if step % self.log_interval and it != self.steps_per_epoch:
            return
        now = time.time()
        sec_per_step = (now - self._window_start) / max(len(self._window["loss"]), 1)
        eta = sec_per_step * (self.total_steps - step)
        means = {k: float(np.mean(v)) for k, v in self._window.items()}
        self.metrics.append({"type": "train", "epoch": epoch, "iter": it, "step": step, "lr": lr, **means,
                             "sec_per_step": sec_per_step, "eta_s": eta, "time": now})
        if self.vdl is not None:
            for k, v in means.items():
                self.vdl.add_scalar(f"train/{k}", v, step)
            self.vdl.add_scalar("train/lr", lr, step)
        others = " ".join(f"{k} {v:.4f}" for k, v in sorted(means.items()) if k != "loss")
        logger.info("epoch %d/%d iter %d/%d step %d/%d lr %.6g loss %.4f (%s) %.3f s/step eta %s", epoch,
                    self.epochs, it, self.steps_per_epoch, step, self.total_steps, lr, means["loss"], others,
                    sec_per_step, format_seconds(eta))
        self._window, self._window_start = {}, now

    def evaluated(self, epoch: int, step: int, metrics: Dict[str, Any]) -> None:
        """Record an evaluation and redraw the curves."""
        if not self.enabled:
            return
        scalars = {k: v for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.metrics.append({"type": "eval", "epoch": epoch, "step": step, **scalars})
        if self.vdl is not None:
            for k, v in scalars.items():
                self.vdl.add_scalar(f"eval/{k}", float(v), epoch)
        self.plot()

    def plot(self) -> None:
        if self.enabled:
            plot_curves(self.metrics.records(), self.out / CURVES)


def _visualdl_writer(logdir: Path) -> Any:
    try:
        from visualdl import LogWriter
    except ImportError:
        return None
    return LogWriter(logdir=str(logdir))
