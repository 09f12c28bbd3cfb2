"""`Global.device` parsing, the process's Paddle device and CPU threads, and multi-device launch.

Parsing imports nothing heavy (config validation and check_dataset stay Paddle-free); `setup_device`
and `resolve_device` import Paddle when called. Several device ids (or several `Global.ips`) mean
data-parallel training, started through `paddle.distributed.launch` (see `launch_command`).
"""
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from engine.errors import ConfigError
from engine.runtime.malloc_tuning import keep_freed_memory

DEVICE_TYPES = ("cpu", "gpu", "xpu", "npu", "mlu")
REPO_ROOT = Path(__file__).resolve().parents[2]


def parse_device(device: str) -> Tuple[str, List[int]]:
    """'gpu:0,1' -> ('gpu', [0, 1]); 'gpu' -> ('gpu', []); 'cpu' -> ('cpu', []). Bad strings: ConfigError."""
    text = str(device).strip().lower()
    kind, sep, ids_text = text.partition(":")
    if kind not in DEVICE_TYPES:
        raise ConfigError(f"Invalid Global.device {device!r}: the type must be one of "
                          f"{', '.join(DEVICE_TYPES)} "
                          "(e.g. cpu, gpu, gpu:0, gpu:0,1,2,3).")
    if not sep:
        return kind, []
    if kind == "cpu":
        raise ConfigError(f"Invalid Global.device {device!r}: cpu takes no device ids; use 'cpu' "
                          "(Global.cpu_threads sets the threads).")
    parts = [p.strip() for p in ids_text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise ConfigError(f"Invalid Global.device {device!r}: ids must be non-negative integers separated "
                          f"by commas, e.g. {kind}:0 or {kind}:0,1,2,3.")
    ids = [int(p) for p in parts]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"Invalid Global.device {device!r}: an id is repeated.")
    return kind, ids


def in_launched_process() -> bool:
    """True inside a process started by paddle.distributed.launch."""
    return "PADDLE_TRAINER_ID" in os.environ or "PADDLE_TRAINERS_NUM" in os.environ


def needs_launch(cfg: Any) -> bool:
    """Training on several devices or nodes, from a process that paddle.distributed.launch did not start."""
    if cfg.Global.mode != "train" or in_launched_process() or cfg.Global.device is None:
        return False
    kind, ids = parse_device(cfg.Global.device)
    nodes = [ip for ip in (cfg.Global.ips or "").split(",") if ip.strip()]
    return kind != "cpu" and (len(ids) > 1 or len(nodes) > 1)


def launch_command(cfg: Any, argv: Sequence[str]) -> List[str]:
    """`python -m paddle.distributed.launch --devices ids [--ips ..] --log_dir .. main.py <argv>`."""
    _, ids = parse_device(cfg.Global.device)
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--devices", ",".join(map(str, ids or [0]))]
    if cfg.Global.ips:
        cmd += ["--ips", str(cfg.Global.ips)]
    cmd += ["--log_dir", str(Path(cfg.Global.output) / "distributed_train_logs"), str(REPO_ROOT / "main.py")]
    return cmd + list(argv)


def resolve_device(device: Optional[str]) -> str:
    """`device`, or for None: 'gpu:0' when Paddle is built with CUDA and sees a GPU, else 'cpu'."""
    if device is not None:
        return device
    import paddle

    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        return "gpu:0"
    return "cpu"


def setup_device(cfg: Any) -> str:
    """Select this process's Paddle device and CPU threads; returns Paddle's device name.

    On CPU, `Global.onednn` switches oneDNN kernels on: measured on 1 thread, a plain conv stack trains
    about 1.5x faster and the demo Mask R-CNN step (batch 4 at 192 px) about 12% faster, with the
    same losses to float precision; no gain measured on ResNet50-FPN at full size. It is off by default
    because, with it on, Paddle 3.3.1 cannot run a traced R-CNN graph in the same process (interpolate
    attributes, training-mode conv-transpose); tracing and saving an export are unaffected.
    Threads: `Global.cpu_threads`, None = os.cpu_count().
    On CPU, malloc keeps freed memory for the next tensor (engine.runtime.malloc_tuning).
    """
    import paddle

    from engine.runtime import distributed

    name = distributed.setup_device(resolve_device(cfg.Global.device))
    threads = cfg.Global.cpu_threads or os.cpu_count() or 1
    setter = getattr(paddle, "set_num_threads", None) or paddle.base.core.set_num_threads
    setter(int(threads))
    if name == "cpu":
        paddle.set_flags({"FLAGS_use_mkldnn": bool(cfg.Global.onednn)})
        keep_freed_memory()
    return name


@contextmanager
def onednn_flag(enabled: bool) -> Iterator[None]:
    """Hold Paddle's global FLAGS_use_mkldnn at `enabled` and restore it afterwards. `setup_device` sets
    the flag for training; tracing to a static graph and Paddle Inference (which obeys the flag over
    Config.disable_mkldnn) need it at a value of their own."""
    import paddle

    before = paddle.get_flags(["FLAGS_use_mkldnn"])["FLAGS_use_mkldnn"]
    paddle.set_flags({"FLAGS_use_mkldnn": enabled})
    try:
        yield
    finally:
        paddle.set_flags({"FLAGS_use_mkldnn": before})
