"""PP-YOLOE_seg exported: the traced graph (NMS and mask assembly included) runs on Paddle Inference with
oneDNN (the CPU default) and with Paddle's kernels, at the exported size and at others, and equals the
dynamic graph, also on images without any detection (no zero-size tensor reaches a oneDNN kernel)."""
from pathlib import Path

import numpy as np
import paddle
import pytest

from engine.config.architectures import PPYOLOESegArchitecture
from engine.deployment.exporter import export_model
from engine.deployment.inference import DeployPredictor
from engine.models.zoo import build_model
from export_tolerance import assert_same_detections, float32_rtol
from test_export import dynamic, images, make_cfg

TINY = PPYOLOESegArchitecture(width_mult=0.125, keep_top_k=50)
# ~60 conv layers to the head outputs, fan-in up to 3 x 3 x 64 (tests/export_tolerance.py)
RTOL = float32_rtol(depth=60, fan_in=3 * 3 * 64)


def _export(tmp_path: Path, class_bias: float, onnx: bool = False) -> tuple:
    paddle.seed(0)
    model = build_model("PP-YOLOE_seg-S", TINY, 3)
    for conv in model.yolo_head.pred_cls:
        conv.weight.set_value(np.random.default_rng(0).normal(0, 0.05, conv.weight.shape).astype("float32"))
        conv.bias.set_value(np.array([class_bias, -20.0, -20.0], "float32"))
    # random deep features are tiny: scale prototypes and coefficients so that mask probabilities are not
    # all within rounding of the 0.5 threshold
    bn = model.yolo_head.proto.conv3.bn.weight
    bn.set_value(bn.numpy() * 3000.0)
    for conv in model.yolo_head.pred_ins:
        conv.weight.set_value(conv.weight.numpy() * 300.0)
    model.eval()
    cfg = make_cfg(tmp_path)
    cfg.Global.model = "PP-YOLOE_seg-S"
    cfg.EvalReader.keep_ratio = False
    cfg.EvalReader.mean, cfg.EvalReader.std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    export_model(model, cfg, str(tmp_path / "inference"), onnx=onnx)
    return model, tmp_path / "inference"


@pytest.mark.parametrize("run_mode", ["mkldnn", "paddle"])
def test_exported_matches_dynamic_graph(run_mode: str, tmp_path: Path) -> None:
    model, folder = _export(tmp_path, class_bias=0.0)
    deploy = DeployPredictor(folder, device="cpu", cpu_threads=1, run_mode=run_mode)
    for batch in (images(), images()[:1]):
        feeds = deploy.preprocessor.batch(batch)
        static, eager = deploy.raw(batch), dynamic(model, feeds)
        assert deploy._fallback is None
        assert eager["bbox_num"].min() > 0 and eager["mask"].sum() > 0
        assert_same_detections(static, eager, batch, RTOL, run_mode)
    # another input size than the exported one: anchors come from the feature shapes
    feeds = deploy.preprocessor.batch(images()[:1])
    feeds["image"] = np.ascontiguousarray(np.tile(feeds["image"], (1, 1, 2, 1)))
    feeds["im_shape"] = feeds["im_shape"] * np.array([2.0, 1.0], "float32")
    predictor = DeployPredictor._run(deploy.predictor, deploy.run_mode, feeds)
    static = dict(zip(deploy.output_names, [predictor.get_output_handle(n).copy_to_cpu()
                                            for n in predictor.get_output_names()]))
    eager = dynamic(model, feeds)
    assert eager["bbox_num"][0] > 0
    assert_same_detections(static, eager, [np.zeros((128, 96, 3))], RTOL, "another size")


def test_exported_without_detections(tmp_path: Path) -> None:
    model, folder = _export(tmp_path, class_bias=-20.0)
    for run_mode in ("auto", "paddle"):
        deploy = DeployPredictor(folder, device="cpu", cpu_threads=1, run_mode=run_mode)
        eager = dynamic(model, deploy.preprocessor.batch(images()))
        assert eager["bbox_num"].tolist() == [0, 0, 0]
        for batch in (images(), images()[:1]):
            out = deploy.raw(batch)
            assert out["bbox_num"].tolist() == [0] * len(batch), run_mode
            assert out["bbox"].shape[0] == 0 and out["mask"].shape[0] == 0
        assert deploy._fallback is None
