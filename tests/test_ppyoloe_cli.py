"""PP-YOLOE_seg through main.py, as a user runs it: train (2 iterations) -> evaluate -> predict -> export ->
predict with the exported model (Paddle Inference, default run mode), on a generated dataset."""
import json
import os
import subprocess
import sys
from pathlib import Path

from dataset_tools.synthetic import make_coco_dataset

REPO = Path(__file__).resolve().parents[1]
SMALL = ["Train.epochs_iters=1", "Train.batch_size=1", "Train.num_workers=0", "Train.warmup_steps=1",
         "Train.log_interval=1", "TrainReader.short_sizes=[64]", "TrainReader.max_size=64",
         "EvalReader.target_size=[64, 96]", "Global.cpu_threads=1"]


def main_py(out: Path, data: Path, mode: str, *overrides: str) -> dict:
    cmd = [sys.executable, str(REPO / "main.py"), "-c", str(REPO / "configs/demo_ppyoloe_seg.yaml")]
    settings = [f"Global.mode={mode}", f"Global.output={out}", f"Global.dataset_dir={data}", *SMALL,
                *overrides]
    for o in settings:
        cmd += ["-o", o]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / f"{mode}_result.json").read_text())


def test_train_evaluate_predict_export_predict(tmp_path: Path) -> None:
    data = make_coco_dataset(tmp_path / "data", num_train=2, num_val=2, size=(64, 64), seed=3)
    out = tmp_path / "out"
    train = main_py(out, data, "train")
    assert train["done_flag"] is True and train["steps_done"] == 2
    assert (out / "best_model" / "best_model.pdparams").is_file()
    assert (out / "best_model" / "best_model.pdema").is_file()  # EMA: .pdparams holds the average
    evaluate = main_py(out, data, "evaluate")
    assert evaluate["done_flag"] is True and "AP" in json.dumps(evaluate)
    images = data / "images"
    weights = out / "best_model" / "best_model.pdparams"
    pred = main_py(tmp_path / "pred", data, "predict", f"Predict.input={images}",
                   f"Predict.weight_path={weights}", "Predict.threshold=0.0")
    assert pred["num_images"] == len(list(images.iterdir()))
    export = main_py(tmp_path / "exp", data, "export", f"Export.weight_path={weights}")
    model_dir = Path(export["save_dir"])
    assert (model_dir / "inference.pdiparams").is_file()
    deployed = main_py(tmp_path / "pred2", data, "predict", f"Predict.input={images}",
                       f"Predict.model_dir={model_dir}", "Predict.threshold=0.0")
    assert deployed["num_images"] == pred["num_images"]
    # the exported graph finds what the dynamic graph finds
    assert [r["num_instances"] for r in deployed["results"]] == [r["num_instances"] for r in pred["results"]]
