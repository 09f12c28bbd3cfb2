"""Data-parallel helpers: rank and world size, process-group set-up, DataParallel wrap, small collectives.

Training is data-parallel when the process was started by `paddle.distributed.launch` (which sets
`PADDLE_TRAINERS_NUM` and `PADDLE_TRAINER_ID`; on CPU the collectives run over gloo). Only rank 0 writes
files. Every rank evaluates its share of the val set and rank 0 computes the metrics from the gathered
results (engine.evaluation.evaluator).

Waiting. Gloo gives up on a collective after 30 s (a fixed default Paddle does not expose), so no rank may
enter one while another is still busy alone (rank 0 computing COCO metrics, writing checkpoints). Every
collective here therefore starts with `barrier()`, which waits through Paddle's TCP key-value store, polling,
for up to `INSTSEG_RANK_WAIT_TIMEOUT` seconds (default 3600): the ranks then enter the collective together.
The trainer calls `barrier()` before the first gradient all-reduce that follows rank-0-only work.
"""
import os
import time
from typing import Any, Dict, List

import paddle
import paddle.distributed as dist

from engine.errors import InstSegError

WAIT_TIMEOUT_ENV = "INSTSEG_RANK_WAIT_TIMEOUT"
_POLL_SECONDS = (0.005, 0.5)  # first and longest pause between two looks at the store

_state: Dict[str, Any] = {"initialised": False, "barriers": 0}


class RankWaitTimeout(InstSegError):
    """A rank waited longer than INSTSEG_RANK_WAIT_TIMEOUT for the others (one died or hangs)."""


def world_size() -> int:
    """Number of data-parallel processes (1 when not launched by paddle.distributed.launch)."""
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def rank() -> int:
    """This process's rank (0 when not launched)."""
    return int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def is_main() -> bool:
    """True on the one process that writes files and logs."""
    return rank() == 0


def launched_device_id() -> int:
    """The accelerator id paddle.distributed.launch assigned to this process."""
    return int(dist.ParallelEnv().device_id)


def init_parallel() -> None:
    """Join the process group once when running data-parallel; no-op otherwise."""
    if world_size() > 1 and not _state["initialised"]:
        dist.init_parallel_env()
        _state["initialised"] = True


def wrap(layer: paddle.nn.Layer) -> paddle.nn.Layer:
    """`paddle.DataParallel(layer)` when data-parallel (gradients are averaged over ranks), else `layer`.

    Unused parameters are allowed: detection heads skip branches on some batches (no positives).
    """
    if world_size() <= 1:
        return layer
    return paddle.DataParallel(layer, find_unused_parameters=True)


def wait_timeout() -> float:
    """Seconds a rank waits for the others in `barrier` (INSTSEG_RANK_WAIT_TIMEOUT, default 3600)."""
    return float(os.environ.get(WAIT_TIMEOUT_ENV, "3600"))


def barrier() -> None:
    """Wait until every rank has arrived here, however long the others are busy (up to `wait_timeout()`).

    Each call is numbered; every rank makes the same calls in the same order, so the n-th call of every
    rank meets under the same store key."""
    if world_size() <= 1:
        return
    init_parallel()
    from paddle.base import core

    _state["barriers"] += 1
    key = f"instseg/barrier/{_state['barriers']}"
    store = core.create_or_get_global_tcp_store()
    store.add(key, 1)
    deadline = time.monotonic() + wait_timeout()
    pause = _POLL_SECONDS[0]
    while store.add(key, 0) < world_size():
        if time.monotonic() > deadline:
            raise RankWaitTimeout(
                f"Rank {rank()} waited {wait_timeout():.0f} s for the other ranks "
                f"(barrier {_state['barriers']}): one of them died or hangs; see the other workers' logs. "
                f"Raise {WAIT_TIMEOUT_ENV} if the work between two barriers (evaluation, checkpoints) really "
                "takes that long.")
        time.sleep(pause)
        pause = min(pause * 2, _POLL_SECONDS[1])


def all_gather_object(obj: Any) -> List[Any]:
    """Every rank's `obj`, in rank order (a one-element list when not data-parallel)."""
    if world_size() <= 1:
        return [obj]
    barrier()
    out: List[Any] = []
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one rank."""
    if world_size() <= 1:
        return flag
    barrier()
    t = paddle.to_tensor([1 if flag else 0], dtype="int32")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if world_size() <= 1:
        return obj
    barrier()
    box: List[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_buffers(layer: paddle.nn.Layer, *more: Dict[str, paddle.Tensor]) -> None:
    """Average the non-trainable floating-point state (BN running statistics) over ranks, in place.

    DataParallel averages gradients, so parameters stay identical on every rank, but each rank updates its
    BN statistics from its own batches. Averaging them before every evaluation and checkpoint makes all
    ranks hold the same state, which is what every rank evaluates, what rank 0 saves and what a resumed
    run loads on every rank. `more`: state dicts keyed like `layer.state_dict()` (an EMA's) whose same
    entries are averaged too.
    """
    if world_size() <= 1:
        return
    barrier()
    n = float(world_size())
    for name, buf in layer.state_dict().items():
        # Paddle's BN statistics are non-trainable parameters, not buffers; trainable ones are in sync
        if not paddle.is_floating_point(buf) or not buf.stop_gradient:
            continue
        for tensor in (buf, *(state[name] for state in more if name in state)):
            total = tensor.detach().clone()
            dist.all_reduce(total)
            tensor.set_value(total / n)


def env_summary() -> Dict[str, int]:
    """Rank and world size, for logs."""
    return {"rank": rank(), "world_size": world_size()}
