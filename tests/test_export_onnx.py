"""ONNX export (`Export.format=onnx`): main.py writes model.onnx next to the Paddle model, and ONNX Runtime
reproduces Paddle Inference's detections on the same preprocessed image (one image per run); without
paddle2onnx the run stops with a ConfigError naming what to install; a graph paddle2onnx cannot convert is a
clear error naming the ops, not a crashed process.

Tolerances: float32 rounding (tests/export_tolerance.py): ONNX Runtime sums convolutions in its own order,
as oneDNN does. These tests need the optional tools (requirements-onnx.txt), which CI installs.
"""
import importlib.util
import json
from pathlib import Path
from typing import Dict

import numpy as np
import paddle
import pytest
import yaml

from engine.config.load import load_config
from engine.deployment import exporter
from engine.deployment.exporter import export_model
from engine.deployment.inference import DeployPredictor
from engine.deployment.onnx_export import OnnxSession, convert_to_onnx
from engine.errors import ConfigError, ModeNotAvailableError
from engine.models.zoo import build_model
from export_tolerance import assert_same_detections, float32_rtol
from test_export import (demo_weights, images, make_cfg, run_cli,  # noqa: F401 (demo_weights: a fixture)
                         tiny_rcnn_arch, tiny_rcnn_with_detections)

OUTPUTS = ["bbox", "bbox_num", "mask"]


def tie_order(out: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """One image's detections by class, score (to 1e-4: tied scores may come in either order from the two
    runtimes' sorts) and box corner; the order among equal scores is not part of the outputs' contract."""
    rows = out["bbox"]
    keys = (np.round(rows[:, 3], 1), np.round(rows[:, 2], 1), -np.round(rows[:, 1], 4), rows[:, 0])
    order = np.lexsort(keys)
    return {"bbox": rows[order], "bbox_num": out["bbox_num"], "mask": out["mask"][order]}


def assert_onnx_matches_paddle(model_dir: Path, rtol: float, count: int = 3) -> None:
    """Each of the first `count` test images alone through Paddle Inference (Paddle's kernels) and ONNX
    Runtime."""
    deploy = DeployPredictor(model_dir, device="cpu", cpu_threads=1, run_mode="paddle")
    session = OnnxSession(model_dir / "model.onnx")
    assert session.input_names == ["image", "im_shape", "scale_factor"]
    compared = 0
    for index, image in enumerate(images(count)):
        paddle_out = deploy.raw([image])
        onnx_out = session.run(deploy.preprocessor.batch([image]), OUTPUTS)
        assert onnx_out["bbox_num"].tolist() == paddle_out["bbox_num"].tolist(), f"image {index}"
        if paddle_out["bbox_num"][0] > 0:
            what = f"image {index}"
            assert_same_detections(tie_order(onnx_out), tie_order(paddle_out), [image], rtol, what)
            compared += 1
    assert compared > 0  # some image had detections to compare


def test_cli_exports_onnx_next_to_the_paddle_model(demo_weights):  # noqa: F811
    """The demo Mask R-CNN (FPN: RPN NMS, FPN level routing, RoIAlign, class NMS, mask pasting) through
    main.py; the Paddle model stays what predict uses."""
    tmp, weights = demo_weights
    done = run_cli("Global.mode=export", "Export.format=onnx", f"Export.weight_path={weights}",
                   f"Global.output={tmp / 'onnx'}", "EvalReader.target_size=[64, 96]")
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp / "onnx" / "inference"
    result = json.loads((tmp / "onnx" / "export_result.json").read_text())
    assert result["done_flag"] is True and result["format"] == "onnx"
    assert Path(result["files"]["onnx"]) == out / "model.onnx"
    info = yaml.safe_load((out / "inference.yml").read_text())
    assert info["onnx_file"] == "model.onnx" and info["onnx_opset"] >= 16
    assert sorted(p.name for p in out.iterdir()) == ["inference.json", "inference.pdiparams", "inference.yml",
                                                     "inference_compiled.json", "model.onnx"]  # no temporary
    # trace left behind; the ONNX graph has Paddle's RoIAlign, not the compiled one
    assert "instseg_" not in (out / "model.onnx").read_bytes().decode("latin-1")
    # ResNet50 + FPN + box head on one path; the widest sum: the box head's first FC over 64 x 7 x 7 values
    assert_onnx_matches_paddle(out, float32_rtol(depth=60, fan_in=64 * 7 * 7))


@pytest.mark.parametrize("name", ["Cascade-MaskRCNN-ResNet50-FPN", "MaskRCNN-ResNet50"])
def test_other_rcnn_layouts_match(name, tmp_path):
    """Cascade (three box stages) and C4 (one feature level, Res5 head) R-CNNs."""
    model = tiny_rcnn_with_detections(name)
    cfg = make_cfg(tmp_path)
    cfg.Global.model = name
    export_model(model, cfg, str(tmp_path / "inference"), onnx=True)
    stages = 3 if "Cascade" in name else 1
    fan_in = tiny_rcnn_arch().fpn_channels * 7 * 7
    assert_onnx_matches_paddle(tmp_path / "inference", float32_rtol(depth=60, fan_in=fan_in, stages=stages))


def test_export_without_paddle2onnx_says_what_to_install(demo_weights, monkeypatch, tmp_path):  # noqa: F811
    _, weights = demo_weights
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "paddle2onnx"
                        else real(name, *a))
    cfg = load_config(None, ["Global.mode=export", "Export.format=onnx", f"Export.weight_path={weights}",
                             f"Global.output={tmp_path}"])
    with pytest.raises(ConfigError, match=r"paddle2onnx.*pip install -r requirements-onnx.txt"):
        exporter.run(cfg)
    assert list(tmp_path.iterdir()) == []  # checked before any file is written


def test_format_is_checked():
    with pytest.raises(ConfigError, match="Export.format"):
        load_config(None, ["Export.format=tflite"])
    assert load_config(None, []).Export.format == "paddle"


def test_unconvertible_graph_is_a_clear_error(tmp_path):
    """paddle2onnx aborts its process on an op it cannot map (here: the Paddle graph of an R-CNN, not the
    ONNX trace): the conversion names the ops instead, and leaves no partial model.onnx."""
    files = export_model(tiny_rcnn_with_detections("MaskRCNN-ResNet50-FPN"), make_cfg(tmp_path),
                         str(tmp_path / "inference"))
    with pytest.raises(ModeNotAvailableError, match="Ops it cannot map: distribute_fpn_proposals, nms"):
        convert_to_onnx(Path(files["pdmodel"]), Path(files["pdiparams"]), tmp_path / "out" / "model.onnx")
    assert list((tmp_path / "out").iterdir()) == []


def test_ppyoloe_seg_matches(tmp_path):
    """PP-YOLOE_seg-S at an eighth of its width: class NMS and prototype-mask assembly in the graph."""
    from test_ppyoloe_export import RTOL, _export
    _export(tmp_path, class_bias=0.0, onnx=True)
    assert_onnx_matches_paddle(tmp_path / "inference", RTOL)


def test_mask_rt_detr_matches(tmp_path):
    """Mask-RT-DETR-S, tiny: deformable attention (grid_sample, opset 16), top-k queries, mask heads."""
    from test_mask_rt_detr_model import TINY
    paddle.seed(0)
    model = build_model("Mask-RT-DETR-S", TINY, 3)
    cfg = make_cfg(tmp_path)
    cfg.Global.model = "Mask-RT-DETR-S"
    cfg.EvalReader.target_size, cfg.EvalReader.keep_ratio, cfg.EvalReader.pad_stride = [96, 96], False, 0
    export_model(model, cfg, str(tmp_path / "inference"), onnx=True)
    assert_onnx_matches_paddle(tmp_path / "inference", float32_rtol(depth=50, fan_in=32 * 9))


def test_solov2_matches(tmp_path):
    """SOLOv2, tiny: GroupNorm heads (paddle2onnx loses its epsilon, restored after conversion), CoordConv,
    grid resizes as gathers, Matrix NMS, mask resizing to the original image."""
    from test_solov2 import tiny_model_with_detections
    model = tiny_model_with_detections()
    cfg = make_cfg(tmp_path)
    cfg.Global.model = "SOLOv2"
    export_model(model, cfg, str(tmp_path / "inference"), onnx=True)
    # ResNet50 (base 16) + FPN + heads on one path; the widest sum: res5's 3x3 convs over 128 channels
    assert_onnx_matches_paddle(tmp_path / "inference", float32_rtol(depth=60, fan_in=128 * 9))


def test_group_norm_epsilon_is_restored(tmp_path):
    """paddle2onnx 2.1.0 writes GroupNorm's InstanceNormalization with epsilon 0; the converted file
    carries the Paddle op's epsilon (without it SOLOv2's scores moved by ~1e-2)."""
    import onnx
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 8, 1), paddle.nn.GroupNorm(4, 8, epsilon=1e-3))
    model.eval()
    paddle.jit.save(model, str(tmp_path / "inference"),
                    input_spec=[paddle.static.InputSpec([1, 3, 4, 4], "float32", "x")])
    onnx_file = tmp_path / "model.onnx"
    convert_to_onnx(tmp_path / "inference.json", tmp_path / "inference.pdiparams", onnx_file)
    norms = [n for n in onnx.load(str(onnx_file)).graph.node if n.op_type == "InstanceNormalization"]
    assert [round(onnx.helper.get_attribute_value(a), 9) for n in norms for a in n.attribute
            if a.name == "epsilon"] == [1e-3]
    x = np.full((1, 3, 4, 4), 0.5, "float32")  # constant maps: variance 0, only epsilon keeps them finite
    x[0, :, 0, 0] = 0.6
    out = OnnxSession(onnx_file).session.run(None, {"x": x})[0]
    np.testing.assert_allclose(out, model(paddle.to_tensor(x)).numpy(), rtol=1e-5, atol=1e-5)


# The other model names, each with its longest path of accumulating layers (float32_rtol's L): the backbone
# (ResNet depth; PPHGNetV2's stem + per block its layers and two aggregation convs) plus the neck and heads
# (R-CNN: FPN and the box head's FCs; Mask-RT-DETR: encoder and decoder, as for Mask-RT-DETR-S above).
OTHER_RCNN_NAMES = {"MaskRCNN-ResNet50-vd-FPN": 60, "MaskRCNN-ResNet101-FPN": 111,
                    "MaskRCNN-ResNet101-vd-FPN": 111, "MaskRCNN-ResNeXt101-vd-FPN": 111,
                    "Cascade-MaskRCNN-ResNet50-vd-SSLDv2-FPN": 60}
OTHER_DETR_NAMES = {"Mask-RT-DETR-M": 61, "Mask-RT-DETR-L": 73, "Mask-RT-DETR-X": 105, "Mask-RT-DETR-H": 137}


def damped_rcnn(name: str) -> paddle.nn.Layer:
    """tiny_rcnn_with_detections(name) with every residual branch's last BatchNorm scale halved: 33 random
    ResNet101 blocks otherwise grow the features to ~1e6 and the RPN proposes nothing at all. Class 0's
    bias is 4, not 10: with ~30 detections, probabilities of 10 rounded to 1.0 in float32 and tied, and the
    two runtimes' NMS broke the ties differently (another surviving box)."""
    model = tiny_rcnn_with_detections(name, class_bias=4.0)
    for path, layer in model.backbone.named_sublayers():
        if path.endswith("branch2c"):
            layer.norm.weight.set_value(layer.norm.weight.numpy() * 0.5)
    return model


def export_onnx_only(model: paddle.nn.Layer, tmp_path: Path, name: str, monkeypatch) -> Path:
    """Export `model` as `name` with every compiled operator off: no compiled graph is traced (the
    comparison runs Paddle's own ops, in the portable graph), which saves a third of the export."""
    monkeypatch.setenv("INSTSEG_NATIVE_OPS", "0")
    cfg = make_cfg(tmp_path)
    cfg.Global.model = name
    if name.startswith("Mask-RT-DETR"):
        cfg.EvalReader.target_size, cfg.EvalReader.keep_ratio, cfg.EvalReader.pad_stride = [96, 96], False, 0
    export_model(model, cfg, str(tmp_path / "inference"), onnx=True)
    out = tmp_path / "inference"
    assert [g["name"] for g in yaml.safe_load((out / "inference.yml").read_text())["graphs"]] == ["portable"]
    assert not (out / "inference_compiled.json").exists()
    return out


@pytest.mark.parametrize("name", list(OTHER_RCNN_NAMES))
def test_every_other_rcnn_name_matches(name, tmp_path, monkeypatch):
    """ResNet-vd (deep stem, pooled shortcuts), ResNet101, ResNeXt101 (grouped convolutions) and the vd
    cascade; one image each (the graph is the same for every image; the tests above vary them)."""
    out = export_onnx_only(damped_rcnn(name), tmp_path, name, monkeypatch)
    stages = 3 if "Cascade" in name else 1
    rtol = float32_rtol(depth=OTHER_RCNN_NAMES[name], fan_in=tiny_rcnn_arch().fpn_channels * 7 * 7,
                        stages=stages)
    assert_onnx_matches_paddle(out, rtol, count=1)


@pytest.mark.parametrize("name", list(OTHER_DETR_NAMES))
def test_every_other_mask_rt_detr_size_matches(name, tmp_path, monkeypatch):
    """PPHGNetV2-M/L/X/H (light blocks, deeper stages) with their encoders (self-attention on stride 32 from
    L on, two layers for H); the same tiny widths as Mask-RT-DETR-S above, one image each."""
    from test_mask_rt_detr_model import TINY
    paddle.seed(0)
    out = export_onnx_only(build_model(name, TINY, 3), tmp_path, name, monkeypatch)
    assert_onnx_matches_paddle(out, float32_rtol(depth=OTHER_DETR_NAMES[name], fan_in=32 * 9), count=1)


def test_box_head_runs_on_zero_rois_in_onnx_runtime(tmp_path):
    """An image whose RPN proposes nothing gives the box head zero pooled RoIs: its flatten must not become a
    Reshape [0, -1], which ONNX Runtime cannot resolve for an empty tensor (it did, on a tiny ResNet101)."""
    from engine.models.heads.bbox_head import TwoFCHead
    paddle.seed(0)
    head = TwoFCHead(4, out_channels=8, resolution=7)
    head.eval()
    spec = [paddle.static.InputSpec([None, 4, 7, 7], "float32", "rois_feat")]
    paddle.jit.save(paddle.jit.to_static(head, input_spec=spec, full_graph=True), str(tmp_path / "inference"),
                    input_spec=spec)
    convert_to_onnx(tmp_path / "inference.json", tmp_path / "inference.pdiparams", tmp_path / "model.onnx")
    import onnxruntime as ort
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for rows in (0, 3):
        feat = np.random.default_rng(rows).normal(size=(rows, 4, 7, 7)).astype("float32")
        got = session.run(None, {"rois_feat": feat})[0]
        assert got.shape == (rows, 8)
        np.testing.assert_allclose(got, head(paddle.to_tensor(feat)).numpy(), rtol=1e-5, atol=1e-5)
