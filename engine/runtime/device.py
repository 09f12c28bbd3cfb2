"""`Global.device` parsing, the process's Paddle device and CPU threads, and multi-device launch.

Parsing imports nothing heavy (config validation and check_dataset stay Paddle-free); `setup_device`
and `resolve_device` import Paddle when called. Several device ids (or several `Global.ips`) mean
data-parallel training, started through `paddle.distributed.launch` (see `launch_command`).
"""
import logging
import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from engine.errors import ConfigError
from engine.runtime import paddle_build, quiet_warnings
from engine.runtime.malloc_tuning import keep_freed_memory

DEVICE_TYPES = ("cpu", "gpu", "xpu", "npu", "mlu")
REPO_ROOT = Path(__file__).resolve().parents[2]
logger = logging.getLogger("instseg")


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
    """`python -m paddle.distributed.launch --devices ids [--ips ..] --log_dir .. main.py <argv>`; a device
    this Paddle build cannot use is a ConfigError here, before any worker starts."""
    kind, ids = parse_device(cfg.Global.device)
    paddle_build.check_device(kind, ids, launched=False)
    # the launcher imports Paddle itself, before engine.runtime.quiet_warnings could filter its ccache note
    quiet = ["-W", f"ignore:{quiet_warnings.KNOWN_HARMLESS[0][0]}:UserWarning"]
    cmd = [sys.executable, *quiet, "-m", "paddle.distributed.launch",
           "--devices", ",".join(map(str, ids or [0]))]
    if cfg.Global.ips:
        cmd += ["--ips", str(cfg.Global.ips)]
    cmd += ["--log_dir", str(launch_log_dir(cfg)), str(REPO_ROOT / "main.py")]
    return cmd + list(argv)


def launch_log_dir(cfg: Any) -> Path:
    """`{output}/distributed_train_logs`, per host when several nodes share the output folder (each node's
    launcher names its workers' logs workerlog.<local rank>)."""
    logs = Path(cfg.Global.output) / "distributed_train_logs"
    nodes = [ip for ip in (cfg.Global.ips or "").split(",") if ip.strip()]
    return logs / socket.gethostname() if len(nodes) > 1 else logs


def run_launch(cmd: Sequence[str], output: Path, log_dir: Path) -> int:
    """Run the launcher `cmd` and return its exit code; when it fails (a worker crashed, was killed, or a
    node was lost) say so in one error line with where the logs are and how to continue."""
    code = subprocess.call(list(cmd))
    if code != 0:
        from engine.training.checkpoint import latest_checkpoint

        last = latest_checkpoint(output)
        resume = (f"relaunch the same command with -o Train.auto_resume=true to continue from {last}" if last
                  else "no checkpoint was written yet, so a relaunch starts from scratch")
        logger.error("Data-parallel training stopped: paddle.distributed.launch exited with code %d (a "
                     "worker failed or was killed, or another node was lost; see %s/workerlog.*); %s.", code,
                     log_dir, resume)
    return code


def resolve_device(device: Optional[str]) -> str:
    """`device`, or for None: 'gpu:0' when Paddle is built with CUDA and sees a GPU, else 'cpu' (with one
    warning when nvidia-smi sees GPUs this CPU build of Paddle cannot use)."""
    if device is not None:
        return device
    import paddle

    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        return "gpu:0"
    paddle_build.warn_if_gpus_unused()
    return "cpu"


def setup_device(cfg: Any) -> str:
    """Select this process's Paddle device and CPU threads, join the process group when launched for
    data-parallel training; returns Paddle's device name ('cpu', 'gpu:1', ...).

    A device this Paddle build cannot use is a ConfigError (engine.runtime.paddle_build.check_device).
    Under paddle.distributed.launch each process takes the accelerator the launcher assigned to it; several
    ids in `Global.device` only make sense there. Safe to call again (the trainer does, for its stand-in
    tests that bypass engine.modes).

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

    kind, ids = parse_device(resolve_device(cfg.Global.device))
    launched = distributed.world_size() > 1
    paddle_build.check_device(kind, ids, launched)
    name = kind
    if kind != "cpu":
        name += f":{distributed.launched_device_id() if launched else (ids or [0])[0]}"
    paddle.set_device(name)
    distributed.init_parallel()
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
