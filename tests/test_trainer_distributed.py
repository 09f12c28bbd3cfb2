"""Data-parallel training: two CPU processes under paddle.distributed.launch (gloo)."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np

from engine.runtime.device import run_launch
from engine.training.metrics_log import read_records
from trainer_standins import EVAL_LOG_ENV, NUM_VAL

DRIVER = Path(__file__).with_name("trainer_standins.py")
REPO = DRIVER.parents[1]
ARGS = ["Train.batch_size=2", "Train.ema_decay=0.9"]  # 12 images / (2 ranks x 2) = 3 steps per epoch


def launch_cmd(out: Path, *args: str) -> List[str]:
    out.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
            "--log_dir", str(out / "dist_logs"), str(DRIVER), str(out), *ARGS, *args]


def launch(out: Path, *args: str) -> Tuple[int, str]:
    env = {**os.environ, EVAL_LOG_ENV: str(out / "evals.jsonl")}
    cmd = launch_cmd(out, *args)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    logs = "".join(p.read_text(errors="replace") for p in sorted((out / "dist_logs").glob("workerlog.*")))
    return proc.returncode, proc.stdout + proc.stderr + logs


def weights(out: Path, rank: int) -> Any:
    return np.load(out / f"rank{rank}_weights.npz")


def max_diff(a: Any, b: Any) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a.files)


def test_two_processes_identical_weights_and_evaluation_shares(tmp_path: Path, caplog: Any) -> None:
    out = tmp_path / "dp"
    rc, log = launch(out)
    assert rc == 0, log[-4000:]
    assert max_diff(weights(out, 0), weights(out, 1)) == 0.0  # parameters and (averaged) BN statistics
    evals: List[dict] = [json.loads(line) for line in (out / "evals.jsonl").read_text().splitlines()]
    by_rank = {r: [e for e in evals if e["rank"] == r] for r in (0, 1)}
    assert len(by_rank[0]) == len(by_rank[1]) == 3  # once per epoch on each rank
    for mine, theirs in zip(by_rank[0], by_rank[1]):  # disjoint shares that cover the val set once
        assert sorted(mine["ids"] + theirs["ids"]) == list(range(1, NUM_VAL + 1)) and theirs["AP"] is None
    result = json.loads((out / "train_result.json").read_text())
    assert result["done_flag"] is True and result["steps_done"] == 9
    gathered = [e["AP"] for e in by_rank[0]]
    assert [r["AP"] for r in read_records(out / "metrics.jsonl") if r["type"] == "eval"] == gathered
    log_text = (out / "train.log").read_text()
    assert "(rank 0 of 2)" in log_text and "rank 1" not in log_text  # only rank 0 writes

    resumed = tmp_path / "dp_resumed"
    rc, log = launch(resumed, "--kill-after-save", "epoch_1")
    assert rc != 0 and not (resumed / "epoch_2").exists(), log[-4000:]
    rc, log = launch(resumed, "Train.auto_resume=true")
    assert rc == 0, log[-4000:]
    for rank in (0, 1):
        assert max_diff(weights(out, rank), weights(resumed, rank)) <= 1e-6

    # a lost node: rank 1 dies (SIGKILL) in epoch 2, after epoch_1's checkpoint; rank 0 then fails in its
    # next gradient all-reduce and the launcher exits non-zero. The launching process says what happened
    # and how to continue; the relaunch with auto_resume ends where the uninterrupted run did.
    lost = tmp_path / "dp_node_lost"
    with caplog.at_level(logging.ERROR, logger="instseg"):
        rc = run_launch(launch_cmd(lost, "--kill-rank-at-step", "1", "5"), lost, lost / "dist_logs")
    assert rc != 0 and not (lost / "epoch_2").exists()
    assert "Data-parallel training stopped" in caplog.text and "workerlog" in caplog.text
    last = lost / "epoch_1" / "epoch_1.pdparams"
    assert f"-o Train.auto_resume=true to continue from {last}" in caplog.text
    rc, log = launch(lost, "Train.auto_resume=true")
    assert rc == 0, log[-4000:]
    assert f"Resumed from {last}" in (lost / "train.log").read_text()
    for rank in (0, 1):
        assert max_diff(weights(out, rank), weights(lost, rank)) <= 1e-6
