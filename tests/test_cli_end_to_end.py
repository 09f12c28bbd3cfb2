"""The whole chain through `main.py` with a real (tiny) Mask R-CNN, the real loader and the real trainer:
check_dataset -> train (3 iterations, evaluation and export of the best model) -> evaluate -> predict
(dynamic graph) -> export -> predict with the exported model. Each step is its own process, as a user
runs them, and each is checked by its exit code, its result JSON and the files it leaves.
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from dataset_tools.synthetic import CLASS_NAMES, make_coco_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "Global.model=MaskRCNN-ResNet50-FPN", "Train.num_classes=3", "Global.device=cpu",
    "Architecture.base_channels=16", "Architecture.fpn_channels=32", "Architecture.box_head_dim=64",
    "Architecture.mask_head_channels=16", "Architecture.mask_head_convs=1",
    "Architecture.anchor_sizes=[16, 32, 64, 128, 256]", "Architecture.freeze_at=-1",
    "Architecture.freeze_norm=false", "Architecture.rpn_pre_nms_top_n_test=100",
    "Architecture.rpn_post_nms_top_n_test=50",
    "TrainReader.short_sizes=[64]", "TrainReader.max_size=64",
    "EvalReader.target_size=[64, 64]",
]


def main_py(*overrides: str) -> Dict:
    """Run main.py with `overrides`; return its exit code and output."""
    cmd = [sys.executable, str(REPO / "main.py"), "-c", str(REPO / "configs/MaskRCNN-ResNet50-FPN.yaml")]
    cmd += [a for o in TINY + list(overrides) for a in ("-o", o)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return {"code": done.returncode, "log": done.stdout + done.stderr}


def result(out: Path, mode: str) -> Dict:
    return json.loads((out / f"{mode}_result.json").read_text())


def prediction_files(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.rglob("*_res.json"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    data = make_coco_dataset(tmp / "data", num_train=6, num_val=3, size=(64, 64), seed=3)
    out = tmp / "out"
    common = [f"Global.dataset_dir={data}", f"Global.output={out}"]
    checked = main_py("Global.mode=check_dataset", *common)
    assert checked["code"] == 0, checked["log"][-3000:]
    done = main_py("Global.mode=train", *common, "Train.epochs_iters=1", "Train.batch_size=2",
                   "Train.num_workers=0", "Train.log_interval=1", "Train.warmup_steps=1",
                   "Train.learning_rate=0.001")
    assert done["code"] == 0, done["log"][-3000:]
    return tmp, data, out, common


def test_check_dataset_then_train(trained):
    tmp, data, out, _ = trained
    check = result(out, "check_dataset")
    assert check["check_pass"] is True and check["attributes"]["train_samples"] == 6
    train = result(out, "train")
    assert train["done_flag"] is True and train["epochs_done"] == 1 and train["steps_done"] == 3
    assert [line.split(" ", 1)[1] for line in (out / "label_dict.txt").read_text().split("\n") if line] \
        == list(CLASS_NAMES)
    best = train["models"]["best"]
    assert best["epoch"] == 1 and 0.0 <= best["score"] <= 1.0
    for key in ("pdparams", "pdopt", "pdstates"):
        assert (out / best[key]).is_file(), key
    assert (out / "best_model" / "inference" / "inference.yml").is_file()
    assert best["compiled_pdmodel"] == "best_model/inference/inference_compiled.json"  # RoIAlign compiled
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert len(losses) == 3 and all(r["loss"] > 0 for r in losses)
    assert any("AP" in r for r in records)


def test_evaluate_the_trained_weights(trained):
    tmp, data, out, common = trained
    done = main_py("Global.mode=evaluate", *common)
    assert done["code"] == 0, done["log"][-3000:]
    metrics = result(out, "evaluate")["metrics"]
    assert 0.0 <= metrics["AP"] <= 1.0 and 0.0 <= metrics["bbox_AP"] <= 1.0
    assert metrics["AP"] == pytest.approx(result(out, "train")["models"]["best"]["score"], abs=1e-9)


def test_predict_dynamic_export_and_predict_exported(trained):
    tmp, data, out, common = trained
    images = data / "images"
    dyn = tmp / "pred_dynamic"
    weights = out / "best_model" / "best_model.pdparams"
    done = main_py("Global.mode=predict", *common[:1], f"Global.output={dyn}", f"Predict.input={images}",
                   f"Predict.weight_path={weights}", "Predict.threshold=0.0")
    assert done["code"] == 0, done["log"][-3000:]
    assert result(dyn, "predict")["num_images"] == 9
    assert len(prediction_files(dyn)) == 9

    exp = tmp / "export"
    done = main_py("Global.mode=export", f"Global.output={exp}",
                   f"Export.weight_path={weights}")
    assert done["code"] == 0, done["log"][-3000:]
    info = result(exp, "export")
    assert info["done_flag"] is True
    model_dir = Path(info["save_dir"])
    assert (model_dir / "inference.pdiparams").is_file() and (model_dir / "inference.yml").is_file()

    deployed = tmp / "pred_exported"
    done = main_py("Global.mode=predict", f"Global.output={deployed}", f"Predict.model_dir={model_dir}",
                   f"Predict.input={images}", "Predict.threshold=0.0")
    assert done["code"] == 0, done["log"][-3000:]
    assert prediction_files(deployed) == prediction_files(dyn)
    first = sorted(deployed.rglob("*_res.json"))[0]
    saved = json.loads(first.read_text())
    res = saved.get("res", saved)
    assert res["input_path"].endswith(".jpg")
    assert len(res["masks"]) == len(res["boxes"])
    for box in res["boxes"]:
        assert box["label"] in CLASS_NAMES and len(box["coordinate"]) == 4
