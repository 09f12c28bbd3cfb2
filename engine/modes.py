"""Mode dispatch: run `Global.mode` and write `{output}/{mode}_result.json`; returns the exit code.

Each mode is a function `run(cfg) -> dict` in its own module, imported only when that mode runs
(check_dataset must not import Paddle). Only this module imports `dataset_tools`.
"""
import importlib
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from omegaconf import DictConfig

from engine.runtime.atomic_io import write_json
from engine.errors import ConfigError, InstSegError, ModeNotAvailableError
from engine.runtime.log import setup_logging

logger = logging.getLogger("instseg")

MODE_MODULES: Dict[str, str] = {
    "check_dataset": "dataset_tools.check",
    "train": "engine.training.trainer",
    "evaluate": "engine.evaluation.evaluator",
    "predict": "engine.prediction.predictor",
    "export": "engine.deployment.exporter",
}
PADDLE_MODES = ("train", "evaluate", "predict", "export")


def mode_function(mode: str) -> Callable[[DictConfig], Dict[str, Any]]:
    """The `run` function of `mode`; ModeNotAvailableError when its module or function is not built yet."""
    module_name = MODE_MODULES[mode]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the mode's module exists but one of its own imports is missing: a real error
        raise ModeNotAvailableError(f"mode {mode} is not built yet ({module_name} does not exist).") from None
    func = getattr(module, "run", None)
    if not callable(func):
        raise ModeNotAvailableError(f"mode {mode} is not built yet ({module_name}.run does not exist).")
    return func


def run_mode(cfg: DictConfig, argv: Optional[Sequence[str]] = None) -> int:
    """Run `cfg.Global.mode`, write its result JSON, and return the process exit code.

    `argv` (default sys.argv[1:]) is passed on when training on several devices re-launches main.py
    through paddle.distributed.launch.
    """
    mode = cfg.Global.mode
    out = Path(cfg.Global.output)
    setup_logging()
    from engine.runtime.device import (in_launched_process, launch_command, launch_log_dir, needs_launch,
                                       run_launch)

    if needs_launch(cfg):
        try:
            cmd = launch_command(cfg, sys.argv[1:] if argv is None else argv)
        except ConfigError as exc:
            print(f"ConfigError: {exc}", file=sys.stderr)
            return exc.exit_code
        logger.info("Data-parallel training: %s", " ".join(cmd))
        return run_launch(cmd, out, launch_log_dir(cfg))
    writes = not in_launched_process() or _rank_is_zero()
    if writes:
        out.mkdir(parents=True, exist_ok=True)
    result_path = out / f"{mode}_result.json"
    try:
        func = mode_function(mode)
        if mode in PADDLE_MODES:
            from engine.runtime.device import setup_device

            setup_device(cfg)
        result = func(cfg)
    except Exception as exc:  # every failure becomes a result file and an exit code
        code = exc.exit_code if isinstance(exc, InstSegError) else 1
        failure: Dict[str, Any] = {"done_flag": False, "err_type": type(exc).__name__, "err_msg": str(exc)}
        report = getattr(exc, "report", None)
        if isinstance(report, dict):
            failure.update({k: v for k, v in report.items() if k not in failure})
        if writes:
            write_json(result_path, failure)
        if not isinstance(exc, InstSegError):
            traceback.print_exc()
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return code
    if writes:
        write_json(result_path, {"done_flag": True, **(result or {})})
    logger.info("%s done; result in %s", mode, result_path)
    return 0


def _rank_is_zero() -> bool:
    import os

    return os.environ.get("PADDLE_TRAINER_ID", "0") == "0"
