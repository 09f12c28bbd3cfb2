"""check_dataset mode: convert (LabelMe) -> re-split -> validate -> analyse -> report.

`run(cfg)` returns the check_dataset result (spec §2) when the dataset passes. When it fails it raises
`DatasetCheckFailed` whose `report` is the same result with `check_pass: false` and every problem, so the
mode runner writes it (with `done_flag: false`) and exits non-zero. Config mistakes (bad split percents,
an unknown source format) raise `ConfigError` before any file is touched. No Paddle import here: CI jobs
that only check data start fast.
"""
import gc
from pathlib import Path
from typing import Any, Dict, Optional

from dataset_tools import analyse, visualize
from dataset_tools.convert_labelme import convert_labelme
from dataset_tools.report import ProblemLog, build_report
from dataset_tools.split import check_percents, split_dataset
from dataset_tools.validate import SplitData, annotation_file, validate_dataset
from engine.errors import ConfigError, DatasetCheckFailed

SOURCE_TYPES = ("LabelMe",)
HISTOGRAM = "check_dataset/histogram.png"  # relative to Global.output


def _check_options(cfg: Any) -> None:
    """Config errors that must stop the run before convert or split change any file."""
    convert, split = cfg.CheckDataset.convert, cfg.CheckDataset.split
    if convert.enable and convert.src_dataset_type not in SOURCE_TYPES:
        raise ConfigError(f"CheckDataset.convert.src_dataset_type is {convert.src_dataset_type!r}; "
                          f"supported: {', '.join(SOURCE_TYPES)} (or set CheckDataset.convert.enable=False)")
    if split.enable:
        check_percents(split.train_percent, split.val_percent)


def run(cfg: Any) -> Dict[str, Any]:
    """Run check_dataset for `cfg` (an InstSegConfig DictConfig); see the module docstring.

    Returns:
        The result dict (without `done_flag`): PaddleX's fields plus `errors`, `warnings`, counts, and
        `convert` / `split` sections (seed, backups) when those steps ran.
    Raises:
        ConfigError: bad CheckDataset options.
        DatasetCheckFailed: the dataset has errors; `.report` holds the full result.
    """
    try:
        return _run(cfg)
    finally:
        gc.unfreeze()  # validation froze the parsed documents (validate.validate_split)


def _run(cfg: Any) -> Dict[str, Any]:
    _check_options(cfg)
    root, output = Path(cfg.Global.dataset_dir), Path(cfg.Global.output)
    (output / "check_dataset").mkdir(parents=True, exist_ok=True)
    log = ProblemLog()
    extra: Dict[str, Any] = {}
    splits: Dict[str, SplitData] = {}
    if cfg.CheckDataset.convert.enable:
        extra["convert"] = convert_labelme(root, cfg.Global.seed, log)
    if cfg.CheckDataset.split.enable and not log.num_errors:
        split = cfg.CheckDataset.split
        extra["split"] = split_dataset(root, split.train_percent, split.val_percent, cfg.Global.seed, log)
    if not log.num_errors:
        splits = validate_dataset(root, log, cfg.CheckDataset.bbox_tolerance)
    samples = {name: visualize.save_demo_images(data, root, output, cfg.CheckDataset.sample_num, log)
               for name, data in splits.items() if data.loaded}
    histogram = _histogram(splits, output)
    num_classes = len(analyse.class_counts(splits)[0]) if splits else 0
    if splits and num_classes and cfg.Train.num_classes != num_classes:
        log.warning("Train.num_classes differs", annotation_file("train"), None, (
            f"Train.num_classes is {cfg.Train.num_classes} but the dataset has {num_classes} classes; "
            f"train with -o Train.num_classes={num_classes}"))
    attributes: Dict[str, Any] = {"num_classes": num_classes}
    for name in ("train", "val"):
        data = splits.get(name)
        attributes[f"{name}_samples"] = data.num_images if data else 0
        attributes[f"{name}_sample_paths"] = samples.get(name, [])
        attributes[f"{name}_instances"] = data.num_instances if data else 0
    report = build_report(log, str(cfg.Global.dataset_dir), attributes, histogram, extra)
    if not report["check_pass"]:
        first = "; ".join(log.first_errors(3))
        raise DatasetCheckFailed(
            f"dataset check failed: {log.num_errors} error(s), {log.num_warnings} warning(s); "
            f"first: {first}. Every problem is listed in {output / 'check_dataset_result.json'}", report)
    return report


def _histogram(splits: Dict[str, SplitData], output: Path) -> Optional[str]:
    """Save the instances-per-class histogram; None (and no stale file) when there are no categories."""
    path = output / HISTOGRAM
    loaded = {name: data for name, data in splits.items() if data.loaded}
    ids, names, counts = analyse.class_counts(loaded) if loaded else ([], [], {})
    if not ids:
        path.unlink(missing_ok=True)
        return None
    analyse.save_histogram(names, counts, path)
    return HISTOGRAM
