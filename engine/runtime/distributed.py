"""Data-parallel helpers: rank and world size, parallel-env set-up, DataParallel wrap, small collectives.

Training is data-parallel when the process was started by `paddle.distributed.launch` (which sets
`PADDLE_TRAINERS_NUM` and `PADDLE_TRAINER_ID`; on CPU the collectives run over gloo). Only rank 0 writes
files. Evaluation runs on rank 0 over the whole val set, so AP is computed once on every image (see
`engine.training.trainer`); the other ranks wait for it at their next collective.
"""
import os
from typing import Any, Dict, List

import paddle
import paddle.distributed as dist

_INITIALISED = False


def world_size() -> int:
    """Number of data-parallel processes (1 when not launched by paddle.distributed.launch)."""
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def rank() -> int:
    """This process's rank (0 when not launched)."""
    return int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def is_main() -> bool:
    """True on the one process that writes files and logs."""
    return rank() == 0


def setup_device(device: str) -> str:
    """Select `device` ('cpu', 'gpu', 'gpu:1', 'gpu:0,1', ...) for this process and return Paddle's name.

    Under paddle.distributed.launch each process gets the accelerator the launcher assigned to it
    (`ParallelEnv().device_id`); several ids in `device` only make sense there.
    """
    kind, _, ids = device.partition(":")
    kind = kind.strip().lower() or "cpu"
    if kind == "cpu":
        paddle.set_device("cpu")
        return "cpu"
    if world_size() > 1:
        dev_id = dist.ParallelEnv().device_id
    else:
        dev_id = int(ids.split(",")[0]) if ids.strip() else 0
    name = f"{kind}:{dev_id}"
    paddle.set_device(name)
    return name


def init_parallel() -> None:
    """Initialise the collective environment once when running data-parallel; no-op otherwise."""
    global _INITIALISED
    if world_size() > 1 and not _INITIALISED:
        dist.init_parallel_env()
        _INITIALISED = True


def wrap(layer: paddle.nn.Layer) -> paddle.nn.Layer:
    """`paddle.DataParallel(layer)` when data-parallel (gradients are averaged over ranks), else `layer`.

    Unused parameters are allowed: detection heads skip branches on some batches (no positives).
    """
    if world_size() <= 1:
        return layer
    return paddle.DataParallel(layer, find_unused_parameters=True)


def barrier() -> None:
    """Wait for every rank."""
    if world_size() > 1:
        dist.barrier()


def all_gather_object(obj: Any) -> List[Any]:
    """Every rank's `obj`, in rank order (a one-element list when not data-parallel)."""
    if world_size() <= 1:
        return [obj]
    out: List[Any] = []
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one rank."""
    if world_size() <= 1:
        return flag
    t = paddle.to_tensor([1 if flag else 0], dtype="int32")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if world_size() <= 1:
        return obj
    box: List[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_buffers(layer: paddle.nn.Layer) -> None:
    """Average the non-trainable floating-point state (BN running statistics) over ranks, in place.

    DataParallel averages gradients, so parameters stay identical on every rank, but each rank updates its
    BN statistics from its own batches. Averaging them before every evaluation and checkpoint makes all
    ranks hold the same state, which is what rank 0 saves and what a resumed run loads on every rank.
    """
    if world_size() <= 1:
        return
    n = float(world_size())
    for buf in layer.state_dict().values():
        # Paddle's BN statistics are non-trainable parameters, not buffers; trainable ones are in sync
        if not paddle.is_floating_point(buf) or not buf.stop_gradient:
            continue
        total = buf.detach().clone()
        dist.all_reduce(total)
        buf.set_value(total / n)


def env_summary() -> Dict[str, int]:
    """Rank and world size, for logs."""
    return {"rank": rank(), "world_size": world_size()}
