"""SOLOv2 through the engine: main.py's modes (train -> evaluate -> predict -> export -> exported predict)
with a tiny config, and the exported graph on Paddle Inference (oneDNN and Paddle kernels) against the
dynamic graph, with and without instances."""
import json
from pathlib import Path

import cv2
import numpy as np
import paddle
import pytest

from dataset_tools.synthetic import make_coco_dataset
from engine.config.load import load_config
from engine.deployment.exporter import export_model
from engine.deployment.inference import DeployPredictor
from engine.modes import run_mode
from test_export import dynamic, images, make_cfg
from test_solov2 import tiny_model

REPO = Path(__file__).resolve().parents[1]
TINY_OVERRIDES = [  # demo_solov2.yaml, narrower and at 64 px: 2 training steps of 2 images
    "Architecture.base_channels=16", "Architecture.fpn_channels=32", "Architecture.head_channels=32",
    "Architecture.mask_mid_channels=16", "Architecture.kernel_out_channels=32", "Architecture.gn_groups=8",
    "Architecture.num_grids=[12,10,8,6,4]", "Train.epochs_iters=1", "Train.batch_size=2",
    "Train.warmup_steps=1", "Train.log_interval=1", "TrainReader.short_sizes=[64]", "TrainReader.max_size=64",
    "EvalReader.target_size=[64, 64]", "Global.cpu_threads=1",
]


def _run(tmp: Path, *overrides: str) -> dict:
    cfg = load_config(str(REPO / "configs" / "demo_solov2.yaml"),
                      TINY_OVERRIDES + [f"Global.dataset_dir={tmp / 'data'}", f"Global.output={tmp / 'out'}",
                                        *overrides])
    mode = str(cfg.Global.mode)
    assert run_mode(cfg, []) == 0, (tmp / "out" / f"{mode}_result.json").read_text()
    return json.loads((tmp / "out" / f"{mode}_result.json").read_text())


def test_train_evaluate_predict_export_and_exported_predict(tmp_path: Path) -> None:
    make_coco_dataset(tmp_path / "data", num_train=4, num_val=2, size=(64, 64), seed=3)
    trained = _run(tmp_path, "Global.mode=train", "Train.export_best=false")
    assert trained["done_flag"] is True and trained["steps_done"] == 2
    metrics = _run(tmp_path, "Global.mode=evaluate")["metrics"]
    assert "AP" in metrics and "bbox_AP" in metrics
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for name, img in zip(["a.jpg", "b.png"], images(2)):
        cv2.imwrite(str(pictures / name), img)
    common = [f"Predict.input={pictures}", "Predict.threshold=0.0"]
    predicted = _run(tmp_path, "Global.mode=predict", *common)
    assert predicted["num_images"] == 2
    exported = _run(tmp_path, "Global.mode=export")
    deployed = _run(tmp_path, "Global.mode=predict", f"Predict.model_dir={exported['save_dir']}", *common)
    counts = [r["num_instances"] for r in predicted["results"]]
    assert [r["num_instances"] for r in deployed["results"]] == counts
    for result in deployed["results"]:
        assert Path(result["json"]).is_file() and Path(result["img"]).is_file()


@pytest.mark.parametrize("with_instances", [True, False])
def test_exported_graph_matches_dynamic_graph_on_onednn(with_instances: bool, tmp_path: Path) -> None:
    """Matrix NMS, the mask resizing and the placeholder row are in the graph; oneDNN (the CPU default)
    runs every batch itself (no fallback), also when no image has an instance."""
    model = tiny_model()
    bias = np.array([2.0, -1.0, 0.5] if with_instances else [-20.0] * 3, "float32")
    model.solov2_head.solo_cate.bias.set_value(bias)
    model.eval()
    cfg = make_cfg(tmp_path)
    cfg.Global.model = "SOLOv2"
    export_model(model, cfg, str(tmp_path / "inference"))
    for run_mode_name in ("mkldnn", "paddle"):
        deploy = DeployPredictor(tmp_path / "inference", device="cpu", cpu_threads=1, run_mode=run_mode_name)
        for batch in (images(), images()[:1]):
            static = deploy.raw(batch)
            eager = dynamic(model, deploy.preprocessor.batch(batch))
            assert static["bbox_num"].tolist() == eager["bbox_num"].tolist()
            assert (eager["bbox_num"].min() > 0) if with_instances else eager["bbox"].shape[0] == 0
            np.testing.assert_array_equal(static["bbox"][:, 0], eager["bbox"][:, 0])
            np.testing.assert_allclose(static["bbox"][:, 1:], eager["bbox"][:, 1:], atol=1e-3)
            assert static["mask"].shape == eager["mask"].shape
            assert np.mean(static["mask"] != eager["mask"]) <= 0.001 if eager["mask"].size else True
        assert deploy._fallback is None, run_mode_name
    paddle.set_flags({"FLAGS_use_mkldnn": False})
