"""train_result.json: PaddleX's fields, built from the checkpoints on disk so it always matches them.

`models.last_1` is the newest kept epoch checkpoint, `last_2` the one before, ...; `models.best` the
best_model. Each is `{score, epoch, pdparams, pdopt, pdstates[, pdema][, inference files]}` with paths
relative to the output directory; `score` is the mask AP of that epoch (null when it was not evaluated).
"""
from pathlib import Path
from typing import Any, Dict, Optional

from engine.training import checkpoint as ckpt
from engine.training.monitor import CURVES, METRICS

LABELS = "label_dict.txt"
_INFERENCE_TAGS = {"inference.yml": "inference_config", "inference.pdmodel": "pdmodel",
                   "inference.json": "pdmodel", "inference.pdiparams": "pdiparams",
                   "inference.pdiparams.info": "pdiparams.info",
                   "inference_compiled.json": "compiled_pdmodel"}


def model_entry(out: Path, ckpt_dir: Path) -> Dict[str, Any]:
    """One `models` entry for checkpoint directory `ckpt_dir`."""
    name = ckpt_dir.name
    states = ckpt.read_states(ckpt_dir) or {}
    entry: Dict[str, Any] = {"score": states.get("metric"), "epoch": states.get("epoch")}
    entry.update(ckpt.files_of(name, ema=(ckpt_dir / f"{name}.pdema").is_file()))
    for file_name, tag in _INFERENCE_TAGS.items():
        path = ckpt_dir / "inference" / file_name
        if path.is_file():
            entry[tag] = path.relative_to(out).as_posix()
    return entry


def build_result(out: Path, model_name: str, epochs: int, epochs_done: int, steps_done: int,
                 best_epoch: Optional[int], best_score: Optional[float], visualdl_log: str,
                 done: bool) -> Dict[str, Any]:
    """The train_result.json dict for output directory `out`."""
    out = Path(out)
    models: Dict[str, Any] = {}
    for i, (_, d) in enumerate(reversed(ckpt.epoch_checkpoints(out)), start=1):
        models[f"last_{i}"] = model_entry(out, d)
    if (out / ckpt.BEST).is_dir():
        models["best"] = model_entry(out, out / ckpt.BEST)
    return {
        "model_name": model_name,
        "label_dict": LABELS if (out / LABELS).is_file() else "",
        "train_log": "train.log",
        "config": "config.yaml",
        "visualdl_log": visualdl_log,
        "metrics_log": METRICS,
        "curves": CURVES if (out / CURVES).is_file() else "",
        "done_flag": done,
        "epochs": epochs,
        "epochs_done": epochs_done,
        "steps_done": steps_done,
        "best_epoch": best_epoch,
        "best_score": best_score,
        "models": models,
    }
