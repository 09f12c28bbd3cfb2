"""Data-parallel training: two CPU processes under paddle.distributed.launch (gloo)."""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np

from engine.training.metrics_log import read_records
from trainer_standins import EVAL_LOG_ENV, NUM_VAL

DRIVER = Path(__file__).with_name("trainer_standins.py")
REPO = DRIVER.parents[1]
ARGS = ["Train.batch_size=2", "Train.ema_decay=0.9"]  # 12 images / (2 ranks x 2) = 3 steps per epoch


def launch(out: Path, *args: str) -> Tuple[int, str]:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, EVAL_LOG_ENV: str(out / "evals.jsonl")}
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
           "--log_dir", str(out / "dist_logs"), str(DRIVER), str(out), *ARGS, *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    logs = "".join(p.read_text(errors="replace") for p in sorted((out / "dist_logs").glob("workerlog.*")))
    return proc.returncode, proc.stdout + proc.stderr + logs


def weights(out: Path, rank: int) -> Any:
    return np.load(out / f"rank{rank}_weights.npz")


def max_diff(a: Any, b: Any) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a.files)


def test_two_processes_identical_weights_and_one_evaluation_over_the_whole_val_set(tmp_path: Path) -> None:
    out = tmp_path / "dp"
    rc, log = launch(out)
    assert rc == 0, log[-4000:]
    assert max_diff(weights(out, 0), weights(out, 1)) == 0.0  # parameters and (averaged) BN statistics
    evals: List[dict] = [json.loads(line) for line in (out / "evals.jsonl").read_text().splitlines()]
    assert len(evals) == 3  # once per epoch, on one process, every val image
    assert all(e["rank"] == 0 and e["images"] == NUM_VAL == e["dataset"] for e in evals)
    result = json.loads((out / "train_result.json").read_text())
    assert result["done_flag"] is True and result["steps_done"] == 9
    logged = [r["AP"] for r in read_records(out / "metrics.jsonl") if r["type"] == "eval"]
    assert logged == [e["AP"] for e in evals]
    log_text = (out / "train.log").read_text()
    assert "(rank 0 of 2)" in log_text and "rank 1" not in log_text  # only rank 0 writes

    resumed = tmp_path / "dp_resumed"
    rc, log = launch(resumed, "--kill-after-save", "epoch_1")
    assert rc != 0 and not (resumed / "epoch_2").exists(), log[-4000:]
    rc, log = launch(resumed, "Train.auto_resume=true")
    assert rc == 0, log[-4000:]
    for rank in (0, 1):
        assert max_diff(weights(out, rank), weights(resumed, rank)) <= 1e-6
