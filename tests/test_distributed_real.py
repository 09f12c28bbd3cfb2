"""Data-parallel training of the real (tiny) Mask R-CNN through main.py under paddle.distributed.launch.

Two CPU processes train, each evaluates its share of the val set after every epoch and rank 0 scores the
gathered results; rank 0 then exports best_model/inference while rank 1 finishes without waiting for it.
The gathered metrics of each evaluation must equal a one-process `Global.mode=evaluate` of the weights saved
then (the epoch checkpoints and best_model).
"""
import json
from pathlib import Path

from engine.training.metrics_log import read_records
from tiny_rcnn_run import TINY, demo_subset, main_py, whole_image_val_targets, worker_logs


def test_two_process_training_evaluates_in_shares_and_matches_one_process_evaluate(tmp_path: Path) -> None:
    data = demo_subset(tmp_path / "data", train=8, val=5)  # 5 val images: shares of 3 and 2
    whole_image_val_targets(data)
    out, logs = tmp_path / "out", tmp_path / "logs"
    common = [f"Global.dataset_dir={data}", f"Global.output={out}", "Global.device=cpu", *TINY]
    schedule = ["Train.epochs_iters=2", "Train.eval_interval=1", "Train.save_interval=1"]
    run = main_py(["Global.mode=train", *schedule, *common], launch=2, log_dir=logs)
    text = run.stdout + run.stderr + worker_logs(logs)
    assert run.returncode == 0, text[-6000:]
    assert "TIMEOUT" not in text and "Traceback" not in text
    result = json.loads((out / "train_result.json").read_text())
    assert result["done_flag"] is True and result["epochs_done"] == 2
    assert (out / "best_model" / "inference" / "inference.yml").is_file()  # rank 0 exported alone
    evals = {r["epoch"]: r for r in read_records(out / "metrics.jsonl") if r["type"] == "eval"}
    assert sorted(evals) == [1, 2]  # mid-training and final evaluation

    weights = {epoch: out / f"epoch_{epoch}" / f"epoch_{epoch}.pdparams" for epoch in evals}
    weights[result["best_epoch"]] = out / "best_model" / "best_model.pdparams"
    for epoch, path in sorted(weights.items()):
        single = main_py(["Global.mode=evaluate", f"Evaluate.weight_path={path}", *common])
        assert single.returncode == 0, single.stderr[-4000:]
        metrics = json.loads((out / "evaluate_result.json").read_text())["metrics"]
        scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}  # metrics.jsonl keeps these
        assert len(scalars) == 24 and {k: evals[epoch][k] for k in scalars} == scalars, epoch
    assert max(r["bbox_AR100"] for r in evals.values()) > 0  # the comparisons are not of zeros only
