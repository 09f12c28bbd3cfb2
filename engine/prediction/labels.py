"""Class names of a trained model, by class index, taken from the training run that made its weights.

The trainer writes `config.yaml` and `label_dict.txt` (lines `<index> <name>`) into `Global.output`, and
its weights into `Global.output/best_model/` or `Global.output/epoch_<n>/`: so a run's files sit next to
the weights or one folder up. Sources, first found wins:

1. `label_dict.txt` next to the weights or one folder up;
2. `config.yaml` there: the categories of the dataset it trained on (`Global.dataset_dir`);
3. `label_dict.txt` in `Global.output` (the run being trained, or the configured output);
4. the categories of `Global.dataset_dir`.

A training run's file (1-3) whose number of names differs from `Train.num_classes` is a ConfigError naming
it. The configured dataset (4) may be unrelated to the model (the demo data by default): when its count
differs, and when there is no source at all, the names are `class_<k>` (with a warning).
"""
import json
import logging
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import yaml

from engine.errors import ConfigError

LABEL_FILE = "label_dict.txt"  # engine.training.result.LABELS
RUN_CONFIG = "config.yaml"

log = logging.getLogger("instseg")


def read_label_dict(path: Path) -> List[str]:
    """Names from a `label_dict.txt` (`<index> <name>` per line, by index)."""
    rows = [line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [parts[1] if len(parts) > 1 else parts[0] for parts in rows]


def dataset_labels(dataset_dir: Any) -> Optional[Tuple[List[str], Path]]:
    """(names by ascending category id, the annotation file) of a COCO dataset folder, or None."""
    for split in ("val", "train"):
        path = Path(str(dataset_dir)) / "annotations" / f"instance_{split}.json"
        try:
            cats = json.loads(path.read_text(encoding="utf-8"))["categories"]
            return [str(c["name"]) for c in sorted(cats, key=lambda c: c["id"])], path
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _run_dirs(weight_path: Optional[str]) -> List[Path]:
    if not weight_path:
        return []
    weights = Path(weight_path)
    return [weights.parent, weights.parent.parent]


def _run_sources(cfg: Any, weight_path: Optional[str]) -> Iterator[Tuple[List[str], Path]]:
    """The training run's (names, file) candidates in priority order, read lazily."""
    run_dirs = _run_dirs(weight_path)
    for folder in run_dirs:
        if (folder / LABEL_FILE).is_file():
            yield read_label_dict(folder / LABEL_FILE), folder / LABEL_FILE
    for folder in run_dirs:
        if (folder / RUN_CONFIG).is_file():
            try:
                run_cfg = yaml.safe_load((folder / RUN_CONFIG).read_text(encoding="utf-8"))
                found = dataset_labels(run_cfg["Global"]["dataset_dir"])
            except (OSError, yaml.YAMLError, KeyError, TypeError):
                found = None
            if found is not None:
                yield found
    output_labels = Path(str(cfg.Global.output)) / LABEL_FILE
    if output_labels.is_file():
        yield read_label_dict(output_labels), output_labels


def model_labels(cfg: Any, weight_path: Optional[str] = None) -> List[str]:
    """Class names by class index for a model with `cfg.Train.num_classes` classes whose weights are
    `weight_path` (None: the model being trained with `cfg`); see the module docstring."""
    num_classes = int(cfg.Train.num_classes)
    for names, source in _run_sources(cfg, weight_path):
        if len(names) != num_classes:
            raise ConfigError(f"{source} names {len(names)} classes but Train.num_classes={num_classes}: "
                              f"set Train.num_classes to the model's class count, or give the training "
                              f"run's {LABEL_FILE} (next to the weights or one folder up).")
        return names
    found = dataset_labels(cfg.Global.dataset_dir)
    if found is not None and len(found[0]) == num_classes:
        log.info("Class names from %s (no training run's %s next to the weights).", found[1], LABEL_FILE)
        return found[0]
    why = (f"{found[1]} names {len(found[0])} classes, not Train.num_classes={num_classes}" if found
           else "and no dataset categories")
    log.warning("No class names for this model (no training run's %s next to the weights; %s): classes "
                "are named class_0..class_%d.", LABEL_FILE, why, num_classes - 1)
    return [f"class_{k}" for k in range(num_classes)]
