"""Mask-RT-DETR through main.py: train 2 iterations -> evaluate -> predict -> export -> predict with the
exported model (configs/demo_mask_rt_detr.yaml, narrowed further, on a generated 96 px dataset). Training,
evaluation and dynamic prediction sample with the compiled deformable attention operator, the exported
model with grid_sample."""
import json
import os
import subprocess
import sys
from pathlib import Path

from dataset_tools.synthetic import make_coco_dataset

REPO = Path(__file__).resolve().parents[1]
SMALL = ["TrainReader.short_sizes=[96]", "TrainReader.max_size=96", "TrainReader.batch_sizes=[96]",
         "EvalReader.target_size=[96, 96]", "Train.batch_size=2",
         "Train.epochs_iters=1", "Train.log_interval=1", "Train.eval_interval=1", "Train.save_interval=1",
         "Evaluate.batch_size=2", "Architecture.encoder_hidden_dim=32", "Architecture.encoder_ffn_dim=64",
         "Architecture.hidden_dim=32", "Architecture.num_queries=20", "Architecture.num_decoder_layers=2",
         "Architecture.num_denoising=10", "Architecture.num_top_queries=10",
         "Architecture.num_sample_points=256"]


def run(*overrides: str) -> dict:
    cmd = [sys.executable, str(REPO / "main.py"), "-c", str(REPO / "configs/demo_mask_rt_detr.yaml")]
    cmd += [a for o in overrides for a in ("-o", o)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_train_evaluate_predict_export_predict(tmp_path: Path) -> None:
    data = make_coco_dataset(tmp_path / "ds", num_train=4, num_val=2, size=(96, 96), seed=3)
    out = tmp_path / "out"
    common = [f"Global.dataset_dir={data}", f"Global.output={out}", *SMALL]
    run("Global.mode=train", *common)
    trained = json.loads((out / "train_result.json").read_text())
    assert trained["done_flag"] is True and trained["steps_done"] == 2
    # the decoder's deformable attention ran on the compiled CPU operator (on by default in eager mode)
    assert "Compiled CPU operator instseg_ms_deform_attn in use" in (out / "train.log").read_text()
    weights = out / "best_model" / "best_model.pdparams"
    assert weights.exists()

    run("Global.mode=evaluate", *common, f"Evaluate.weight_path={weights}")
    evaluated = json.loads((out / "evaluate_result.json").read_text())
    assert evaluated["done_flag"] is True

    image = sorted((data / "images").glob("val_*.jpg"))[0]
    run("Global.mode=predict", *common, f"Predict.weight_path={weights}", f"Predict.input={image}",
        f"Global.output={tmp_path / 'pred'}", "Predict.threshold=0.0")
    dynamic = json.loads((tmp_path / "pred" / "predict" / f"{image.stem}_res.json").read_text())
    dynamic = dynamic.get("res", dynamic)
    assert len(dynamic["boxes"]) == 10 and len(dynamic["masks"]) == 10

    run("Global.mode=export", *common, f"Export.weight_path={weights}", f"Global.output={tmp_path / 'exp'}")
    model_dir = tmp_path / "exp" / "inference"
    assert (model_dir / "inference.yml").exists()
    run("Global.mode=predict", f"Predict.model_dir={model_dir}", f"Predict.input={image}",
        f"Global.output={tmp_path / 'pred_exported'}", "Predict.threshold=0.0")
    exported = json.loads((tmp_path / "pred_exported" / "predict" / f"{image.stem}_res.json").read_text())
    exported = exported.get("res", exported)
    assert [b["cls_id"] for b in exported["boxes"]] == [b["cls_id"] for b in dynamic["boxes"]]
    for a, b in zip(exported["boxes"], dynamic["boxes"]):
        assert abs(a["score"] - b["score"]) < 1e-4
        assert max(abs(x - y) for x, y in zip(a["coordinate"], b["coordinate"])) < 1e-2
