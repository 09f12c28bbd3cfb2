"""Value checks after merging: keys with a fixed set of choices and ranges that matter.

Each failure names the key, the value, what is allowed and the source that set it.
"""
from typing import Any, Callable, Dict, Tuple

from omegaconf import DictConfig, OmegaConf

from engine.config.schema import MODES
from engine.deployment.high_performance import RUN_MODES
from engine.config.suggest import did_you_mean
from engine.errors import ConfigError

CHOICES: Dict[str, Tuple[Any, ...]] = {
    "Global.mode": MODES,
    "Export.format": ("paddle", "onnx"),
    "Train.lr_scheduler": ("piecewise", "cosine", "constant"),
    "Train.optimizer": ("momentum", "adamw"),
    "Evaluate.backend": ("pycocotools", "fast"),
    "Predict.kernel_option.run_mode": RUN_MODES,
}

Rule = Tuple[Callable[[Any], bool], str]
POSITIVE: Rule = (lambda v: v is None or v > 0, "> 0")
NON_NEGATIVE: Rule = (lambda v: v is None or v >= 0, ">= 0")
UNIT: Rule = (lambda v: v is None or 0 <= v <= 1, "in [0, 1]")
OPEN_UNIT: Rule = (lambda v: v is None or 0 < v < 1, "in (0, 1)")
ALL_POSITIVE: Rule = (lambda v: len(v) > 0 and all(x > 0 for x in v), "a non-empty list of values > 0")
RANGES: Dict[str, Rule] = {
    "Global.cpu_threads": POSITIVE,
    "CheckDataset.sample_num": NON_NEGATIVE,
    "CheckDataset.bbox_tolerance": NON_NEGATIVE,
    "Train.num_classes": POSITIVE,
    "Train.epochs_iters": POSITIVE,
    "Train.batch_size": POSITIVE,
    "Train.learning_rate": POSITIVE,
    "Train.warmup_steps": NON_NEGATIVE,
    "Train.warmup_start_factor": UNIT,
    "Train.milestones": (lambda v: all(x > 0 for x in v) and list(v) == sorted(set(v)),
                         "increasing positive epochs"),
    "Train.base_epochs": POSITIVE,
    "Train.gamma": POSITIVE,
    "Train.momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "Train.weight_decay": NON_NEGATIVE,
    "Train.clip_grad_norm": POSITIVE,
    "Train.ema_decay": OPEN_UNIT,
    "Train.log_interval": POSITIVE,
    "Train.eval_interval": POSITIVE,
    "Train.save_interval": POSITIVE,
    "Train.num_workers": NON_NEGATIVE,
    "Evaluate.log_interval": POSITIVE,
    "Evaluate.batch_size": POSITIVE,
    "Predict.batch_size": POSITIVE,
    "Predict.threshold": UNIT,
    "Predict.kernel_option.cpu_threads": POSITIVE,
}
READER_RANGES: Dict[str, Rule] = {
    "short_sizes": ALL_POSITIVE,
    "max_size": POSITIVE,
    "flip_prob": UNIT,
    "pad_stride": NON_NEGATIVE,
    "mean": (lambda v: len(v) == 3, "3 values (R, G, B)"),
    "std": (lambda v: len(v) == 3 and all(x > 0 for x in v), "3 values > 0 (R, G, B)"),
    "batch_sizes": (lambda v: all(x > 0 for x in v), "values > 0"),
}
RANGES.update({f"TrainReader.{key}": rule for key, rule in READER_RANGES.items()})
RANGES.update({
    "EvalReader.target_size": (lambda v: len(v) == 2 and all(x > 0 for x in v), "two sizes > 0"),
    "EvalReader.interp": (lambda v: v in (0, 1, 2, 3, 4), "an OpenCV interpolation code 0-4"),
    **{f"EvalReader.{key}": READER_RANGES[key] for key in ("pad_stride", "mean", "std")},
})


def check_values(cfg: DictConfig, origins: Dict[str, str]) -> None:
    """ConfigError for the first value outside its choices or range; `origins` maps key path → source."""
    def source(key: str) -> str:
        return origins.get(key, "the schema default")

    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            hint = did_you_mean(str(value), [str(a) for a in allowed])
            raise ConfigError(f"Invalid value {key}={value!r} (from {source(key)}): choose one of "
                              f"{', '.join(map(str, allowed))}.{hint}")
    for key, (ok, wanted) in RANGES.items():
        value = OmegaConf.select(cfg, key)
        if not ok(value):
            raise ConfigError(f"Invalid value {key}={_show(value)} (from {source(key)}): must be {wanted}.")
    device = cfg.Global.device
    if device is not None:
        from engine.runtime.device import parse_device  # no Paddle import: parsing is plain string work

        try:
            parse_device(device)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from {source('Global.device')})") from None


def _show(value: Any) -> str:
    if isinstance(value, DictConfig) or hasattr(value, "_content"):
        return repr(OmegaConf.to_container(value))
    return repr(value)
